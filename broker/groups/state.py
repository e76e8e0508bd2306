"""The classic group state machine, written as data (Kafka's ``GroupState``).

::

    Empty ──join──▶ PreparingRebalance ──all joined / timeout──▶ CompletingRebalance
      ▲                 │   ▲                                      │       │
      │   nobody joined │   └──────── member change ───────────────┘       │ leader's SyncGroup
      └─────────────────┘   ▲                                              ▼
                            └──────────── member change ─────────────── Stable
    any state ──DeleteGroups──▶ Dead

:data:`TRANSITIONS` maps each state to the states it may move to; anything else is a
bug in the coordinator and raises :class:`IllegalStateTransition`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

__all__ = ["TRANSITIONS", "GroupState", "IllegalStateTransition", "check_transition"]


class GroupState(enum.Enum):
    """A group's state; ``value`` is Kafka's state name as DescribeGroups/ListGroups show it."""

    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"

    @classmethod
    def parse(cls, name: str) -> GroupState:
        """The state named ``name`` (case-insensitive, as ListGroups' states filter is)."""
        for state in cls:
            if state.value.lower() == name.lower():
                return state
        names = ", ".join(s.value for s in cls)
        raise ValueError(f"unknown group state {name!r}; expected one of {names}")


_S = GroupState

TRANSITIONS: Mapping[GroupState, frozenset[GroupState]] = {
    _S.EMPTY: frozenset({_S.PREPARING_REBALANCE, _S.DEAD}),
    _S.PREPARING_REBALANCE: frozenset({_S.COMPLETING_REBALANCE, _S.EMPTY, _S.DEAD}),
    _S.COMPLETING_REBALANCE: frozenset({_S.STABLE, _S.PREPARING_REBALANCE, _S.DEAD}),
    _S.STABLE: frozenset({_S.PREPARING_REBALANCE, _S.DEAD}),
    _S.DEAD: frozenset({_S.DEAD}),
}


class IllegalStateTransition(RuntimeError):
    """The coordinator tried a transition the table forbids (a bug, never a client fault)."""


def check_transition(group_id: str, current: GroupState, target: GroupState) -> None:
    """Raise :class:`IllegalStateTransition` unless ``current -> target`` is in the table."""
    if target not in TRANSITIONS[current]:
        raise IllegalStateTransition(
            f"group {group_id!r} cannot move from {current.value} to {target.value}"
        )

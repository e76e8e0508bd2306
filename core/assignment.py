"""Which gateway process runs which source: the group leader's assignment, as data.

Each member of the gateway group says, in its JoinGroup metadata
(:class:`MemberInfo`), who it is (``worker`` = ``host:pid``), which sources its
config declares (ingress sources excluded: they run everywhere) and which it
runs now (``owned``, with their state). The leader calls :func:`assign` with
every member and sends each its :class:`Plan`. The rules:

1. a source goes to at most one member per generation, and only to a member
   that declares it;
2. sticky: a source stays with the member that runs it, as long as that member
   holds no more than its fair share (``ceil(sources / members)``);
3. a source is never moved from one live member to another in one generation
   (incremental, as in Kafka's cooperative rebalancing): when it must move, it is
   assigned to nobody and its owner is told to ``rejoin`` once it stopped it;
   the next generation gives it to the least-loaded member;
4. every other source goes to the least-loaded member declaring it (ties by
   worker name, so the result does not depend on the order members joined).

Every plan also carries the whole map (``owners``: source -> worker and state),
so each process can show who runs what.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PROTOCOL", "MemberInfo", "Plan", "assign"]

PROTOCOL = "backbone-sources-v1"
"""The group protocol name (the group's protocol type is ``backbone``)."""


@dataclass(frozen=True)
class MemberInfo:
    """What a member tells the leader when it joins."""

    member_id: str
    worker: str
    sources: tuple[str, ...]
    owned: dict[str, str] = field(default_factory=dict)  # source -> state

    def encode(self) -> bytes:
        return json.dumps(
            {"worker": self.worker, "sources": list(self.sources), "owned": self.owned},
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, member_id: str, data: bytes) -> MemberInfo:
        """Parse a member's metadata; a member that sent something else gets no source."""
        try:
            value = json.loads(data)
            return cls(
                member_id,
                str(value["worker"]),
                tuple(str(s) for s in value["sources"]),
                {str(k): str(v) for k, v in dict(value.get("owned") or {}).items()},
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            return cls(member_id, f"unknown member {member_id}", ())


@dataclass(frozen=True)
class Plan:
    """One member's assignment in one generation, and the whole map."""

    generation: int
    sources: tuple[str, ...]
    rejoin: bool
    owners: dict[str, tuple[str, str]]  # source -> (worker, state)
    workers: tuple[str, ...]

    def encode(self) -> bytes:
        return json.dumps(
            {
                "generation": self.generation,
                "sources": list(self.sources),
                "rejoin": self.rejoin,
                "owners": {s: list(o) for s, o in self.owners.items()},
                "workers": list(self.workers),
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, data: bytes) -> Plan:
        value: dict[str, Any] = json.loads(data)
        return cls(
            int(value["generation"]),
            tuple(value["sources"]),
            bool(value["rejoin"]),
            {s: (str(o[0]), str(o[1])) for s, o in value["owners"].items()},
            tuple(value["workers"]),
        )


def assign(members: list[MemberInfo], generation: int) -> dict[str, Plan]:
    """The plan of every member (see the module docstring for the rules)."""
    ordered = sorted(members, key=lambda m: (m.worker, m.member_id))
    declared: dict[str, list[MemberInfo]] = {}
    for member in ordered:
        for source in member.sources:
            declared.setdefault(source, []).append(member)
    share = math.ceil(len(declared) / len(ordered)) if ordered else 0
    given: dict[str, list[str]] = {m.member_id: [] for m in ordered}
    owners: dict[str, tuple[str, str]] = {}
    taken: set[str] = set()
    rejoin: set[str] = set()
    for member in ordered:  # rule 2: keep what runs, up to the fair share
        for source in sorted(member.owned):
            if source in taken or source not in member.sources:
                rejoin.add(member.member_id)  # a second owner, or no longer declared
                continue
            if len(given[member.member_id]) >= share:
                rejoin.add(member.member_id)  # rule 3: freed now, given next generation
                taken.add(source)
                continue
            given[member.member_id].append(source)
            owners[source] = (member.worker, member.owned[source])
            taken.add(source)
    for source in sorted(declared):  # rule 4
        if source in taken:
            continue
        target = min(declared[source], key=lambda m: len(given[m.member_id]))
        given[target.member_id].append(source)
        owners[source] = (target.worker, "ASSIGNED")
    workers = tuple(m.worker for m in ordered)
    return {
        m.member_id: Plan(
            generation,
            tuple(sorted(given[m.member_id])),
            m.member_id in rejoin,
            owners,
            workers,
        )
        for m in ordered
    }

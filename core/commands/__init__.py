"""The operator commands of ``backbone`` (topics, produce, consume, groups, replay, dlq).

Each lives in its own module; :func:`register` adds them to the typer app of
:mod:`backbone.cli`. Every one takes ``--config FILE`` or ``--bootstrap HOST:PORT``
(:mod:`backbone.target` decides which broker that means).
"""

from __future__ import annotations

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add the operator commands to ``app``."""
    from backbone.commands import dlq, groups, records, replay, topics

    app.add_typer(topics.app)
    app.command()(records.produce)
    app.command()(records.consume)
    app.add_typer(groups.app)
    app.command()(replay.replay)
    app.add_typer(dlq.app)

"""A processor function for the pipeline tests (``tests.core.processing:double``)."""

from __future__ import annotations

from backbone.events import Event


def double(event: Event) -> list[Event] | None:
    """Drop odd ``n``; emit even ones twice."""
    if event.value["n"] % 2:
        return None
    return [Event(value={"n": event.value["n"], "copy": i}, key=event.key) for i in (1, 2)]

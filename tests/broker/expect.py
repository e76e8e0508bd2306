"""``exactly(message)``: a ``pytest.raises(..., match=)`` pattern for one whole message."""

from __future__ import annotations

import re


def exactly(message: str) -> str:
    """A regular expression matching ``message`` and nothing more."""
    return f"^{re.escape(message)}$"

"""Small pieces every HTTP connector needs, in the connector SDK (:mod:`backbone.sdk`).

- :func:`json_pointer`: an RFC 6901 JSON pointer (``/order/id``, ``/items/0``,
  ``""`` = the whole document) resolved in a decoded JSON document;
- :func:`parse_retry_after`: an HTTP ``Retry-After`` value (delay seconds or an
  HTTP date) as seconds to wait from ``now``;
- :class:`Template`: ``https://x/orders/{value.id}`` rendered per record, with
  each substituted value URL-quoted.
"""

from __future__ import annotations

import email.utils
import re
import string
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

__all__ = ["MISSING", "Template", "json_pointer", "parse_retry_after"]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
"""What :func:`json_pointer` returns (by default) when the pointer finds nothing."""


def _tokens(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise ValueError(f"a JSON pointer starts with '/' (got {pointer!r}); '' is the whole body")
    return [part.replace("~1", "/").replace("~0", "~") for part in pointer[1:].split("/")]


def json_pointer(document: Any, pointer: str, default: Any = MISSING) -> Any:
    """The value at ``pointer`` (RFC 6901) in ``document``, or ``default`` if absent."""
    current = document
    for token in _tokens(pointer):
        if isinstance(current, Mapping):
            if token not in current:
                return default
            current = current[token]
        elif isinstance(current, list):
            if not token.isdigit() or int(token) >= len(current):
                return default
            current = current[int(token)]
        else:
            return default
    return current


def check_pointer(pointer: str) -> str:
    """``pointer`` if it is a valid JSON pointer, else :class:`ValueError` (for validators)."""
    _tokens(pointer)
    return pointer


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header, or ``None`` if absent/unreadable.

    Both forms of RFC 9110 are accepted: a number of seconds (``120``) and an HTTP
    date (``Wed, 21 Oct 2015 07:28:00 GMT``, measured from ``now``, a Unix time). A
    date in the past gives ``0``.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return float(int(text))
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment is None or moment.tzinfo is None:
        return None
    return max(moment.timestamp() - now, 0.0)


_FIELD = re.compile(r"^(value|key|headers|topic|partition|offset)((?:\.[^.{}]+)*)$")


class Template:
    """A string with ``{field}`` placeholders filled from a record.

    Fields: ``topic``, ``partition``, ``offset``, ``key`` and ``value`` (the decoded
    JSON key/value), with dotted paths into them (``value.customer.id``,
    ``value.items.0``), and ``headers.NAME``. Each substituted value is quoted
    for a URL path segment (``quote(str(v), safe="")``) unless ``quote=False``.
    ``{{`` and ``}}`` are literal braces. A field that is missing raises
    :class:`KeyError` naming it.
    """

    def __init__(self, text: str, *, quoted: bool = True) -> None:
        self.text = text
        self.quoted = quoted
        self.parts: list[tuple[str, tuple[str, list[str]] | None]] = []
        for literal, field, spec, conversion in string.Formatter().parse(text):
            if spec or conversion:
                raise ValueError(f"template {text!r}: format specs are not supported")
            parsed = None
            if field is not None:
                match = _FIELD.match(field)
                if match is None:
                    raise ValueError(
                        f"template {text!r}: unknown field {{{field}}} (use value.PATH, "
                        "key, key.PATH, headers.NAME, topic, partition or offset)"
                    )
                root, rest = match.group(1), match.group(2)
                path = rest[1:].split(".") if rest else []
                if root == "headers" and len(path) != 1:
                    raise ValueError(f"template {text!r}: write headers.NAME")
                parsed = (root, path)
            self.parts.append((literal, parsed))
        self.fields = [part for _, part in self.parts if part is not None]

    @property
    def constant(self) -> bool:
        """Whether the template has no placeholders."""
        return not self.fields

    def render(self, lookup: Callable[[str], Any]) -> str:
        """Fill the placeholders; ``lookup(root)`` gives ``value``, ``key``, ``topic``...
        (for ``headers`` a mapping of header names to text)."""
        out: list[str] = []
        for literal, field in self.parts:
            out.append(literal)
            if field is None:
                continue
            root, path = field
            current = lookup(root)
            for step in path:
                if isinstance(current, Mapping) and step in current:
                    current = current[step]
                elif isinstance(current, list) and step.isdigit() and int(step) < len(current):
                    current = current[int(step)]
                else:
                    raise KeyError(".".join([root, *path]))
            if current is None or isinstance(current, dict | list):
                raise KeyError(".".join([root, *path]))
            text = str(current).lower() if isinstance(current, bool) else str(current)
            out.append(quote(text, safe="") if self.quoted else text)
        return "".join(out)

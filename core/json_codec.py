"""JSON decoding on the record path: orjson, with the standard library's results.

A leaf module (the connector contract and :mod:`backbone.events` both use it):
:func:`loads` decodes with orjson and falls back to :mod:`json` where orjson would
differ (integers beyond 64 bits, ``NaN``, UTF-16/32); :func:`maybe_json` spares a
decode that could only fail; :func:`orjson_exact` lets a caller decoding a batch
check it for such numbers at once and then use :func:`orjson.loads` per document.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import orjson

__all__ = ["loads", "maybe_json", "orjson_exact"]

#: First bytes after which :func:`json.loads` may succeed (JSON, its whitespace,
#: NaN/Infinity, a UTF-8 BOM, UTF-16/32 text); other data is not JSON at all.
_JSON_START = frozenset(b'{["-0123456789 \t\r\n\x00\xef\xfe\xff')
#: Words that are whole JSON documents (stdlib also reads NaN and Infinity).
_WORDS = frozenset((b"true", b"false", b"null", b"NaN", b"Infinity"))
_WORD_START = frozenset(b"tfnNI")
_JSON_SPACE = b" \t\r\n"
#: Digits -> "0": a run of 19 zeros in the translation marks a number orjson could
#: round (it reads integers beyond 64 bits as floats).
_DIGITS = bytes.maketrans(b"0123456789", b"0" * 10)
_LONG_NUMBER = b"0" * 19


def maybe_json(data: bytes) -> bool:
    """False when ``data`` cannot be a JSON document (decoding it would only fail).

    A cheap look at the first byte, so a sink does not pay a failing decode (and
    its exception) for every key like ``key-5`` or every plain-text value.
    """
    if not data:
        return False
    first = data[0]
    if first in _WORD_START:
        return data.rstrip(_JSON_SPACE) in _WORDS
    return first in _JSON_START


def loads(data: bytes, *, strict: bool = False) -> Any:
    """``data`` decoded as JSON (UTF-8) with orjson; :class:`ValueError` if it is not JSON.

    Numbers orjson would round (beyond 64 bits) are read exactly by :mod:`json`.
    Without ``strict``, whatever :func:`json.loads` accepts is accepted too
    (``NaN``, ``Infinity``, UTF-16/32); with it, only RFC 8259 JSON in UTF-8.
    """
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        if strict:
            raise
        return json.loads(data)
    if len(data) >= 19 and _LONG_NUMBER in data.translate(_DIGITS):
        return json.loads(data)
    return value


def orjson_exact(documents: Iterable[bytes]) -> bool:
    """True when :func:`loads` of each of ``documents`` is :func:`orjson.loads` of it
    (when that succeeds): none holds a run of 19 or more digits, the only case where
    :func:`loads` decodes a document orjson reads with :mod:`json` instead.

    One C-speed scan of the documents joined (a space between them, so no run spans
    two), instead of one per document: a sink decoding a batch checks it once and then
    calls :func:`orjson.loads` per record, falling back to :func:`loads` when it fails.
    """
    return _LONG_NUMBER not in b" ".join(documents).translate(_DIGITS)

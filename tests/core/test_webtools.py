"""JSON pointers, Retry-After and URL templates (backbone.sdk helpers)."""

from __future__ import annotations

import pytest

from backbone.sdk import MISSING, Template, json_pointer, parse_retry_after

DOC = {"order": {"id": 7, "lines": [{"sku": "a/b"}, {"sku": "c~d"}]}, "a/b": 1, "m~n": 2, "": 3}


def test_json_pointer_follows_rfc_6901() -> None:
    assert json_pointer(DOC, "") is DOC
    assert json_pointer(DOC, "/order/id") == 7
    assert json_pointer(DOC, "/order/lines/1/sku") == "c~d"
    assert json_pointer(DOC, "/a~1b") == 1
    assert json_pointer(DOC, "/m~0n") == 2
    assert json_pointer(DOC, "/") == 3
    assert json_pointer(DOC, "/order/lines/2") is MISSING
    assert json_pointer(DOC, "/order/lines/x", None) is None
    assert json_pointer(DOC, "/order/id/deeper") is MISSING
    with pytest.raises(ValueError, match="a JSON pointer starts with '/'"):
        json_pointer(DOC, "order")


def test_retry_after_seconds_and_http_dates() -> None:
    now = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    assert parse_retry_after("120", now=now) == 120.0
    assert parse_retry_after(" 0 ", now=now) == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now=now) == 30.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now=now) == 0.0
    assert parse_retry_after(None, now=now) is None
    assert parse_retry_after("", now=now) is None
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after("-5", now=now) is None


def test_templates_fill_record_fields_quoted() -> None:
    values = {"value": {"id": 7, "name": "a b/c", "ok": True}, "key": "k1", "topic": "t"}
    headers = {"ce_type": "x.y"}

    def lookup(root: str) -> object:
        return headers if root == "headers" else values[root]

    template = Template("https://x/orders/{value.id}/{value.name}?k={key}&t={headers.ce_type}")
    assert not template.constant
    assert template.render(lookup) == "https://x/orders/7/a%20b%2Fc?k=k1&t=x.y"
    assert Template("{value.ok}-{topic}").render(lookup) == "true-t"
    assert Template("https://x/{{literal}}").render(lookup) == "https://x/{literal}"
    assert Template("https://x/").constant
    with pytest.raises(KeyError, match=r"value\.missing"):
        Template("/{value.missing}").render(lookup)
    with pytest.raises(ValueError, match=r"unknown field \{body\}"):
        Template("/{body}")
    with pytest.raises(ValueError, match="format specs are not supported"):
        Template("/{value.id:>5}")

"""Declarative transforms and the safe filter language; event encoding and CloudEvents."""

from __future__ import annotations

import json
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backbone import DataError, SourceRecord
from backbone.config import DropStep, FilterStep, MaskStep, RenameStep, Route, RouteStep, SetStep
from backbone.events import Event, encode_event, encode_key, encode_source_record, iso_time
from backbone.transforms import apply_transforms, compile_filter

ORDER = {"id": 7, "amount": 250, "country": "DE", "customer": {"email": "a@b.c", "vip": True}}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("amount > 100", True),
        ("amount > 100 and country == 'FR'", False),
        ("amount > 100 and country in ['DE', 'AT']", True),
        ("not customer.vip", False),
        ("customer.email != null", True),
        ("missing is None", True),
        ("missing > 3", False),  # None > 3 is a TypeError: the comparison is false
        ("-amount < 0 or false", True),
        ("country not in ('DE',)", False),
        ("100 < amount <= 250", True),
    ],
)
def test_filter_expressions(expression: str, expected: bool) -> None:
    assert compile_filter(expression)(ORDER) is expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("amount >", "invalid filter expression 'amount >': invalid syntax"),
        (
            "open('x')",
            "unsupported filter expression \"open('x')\": use field names, literals, "
            "comparisons (== != < <= > >= in, not in, is None), and/or/not",
        ),
        (
            "amount + 1 > 2",
            "unsupported filter expression 'amount + 1' in 'amount + 1 > 2': use field names, "
            "literals, comparisons (== != < <= > >= in, not in, is None), and/or/not",
        ),
        (
            "x.__class__ == 1 or ().__len__()",
            "unsupported filter expression '().__len__()' in 'x.__class__ == 1 or "
            "().__len__()': use field names, literals, comparisons (== != < <= > >= in, not "
            "in, is None), and/or/not",
        ),
    ],
)
def test_filter_rejects_code(expression: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        compile_filter(expression)
    assert str(info.value) == message


def test_dunder_names_are_plain_fields() -> None:
    # attribute syntax only reads JSON fields, never Python attributes
    assert compile_filter("x.__class__ == null")({"x": 1}) is True


def test_transform_steps() -> None:
    steps = [
        FilterStep(filter="amount > 100"),
        MaskStep(mask=["customer.email", "nope"]),
        SetStep(set={"meta.source": "shop", "id": 8}),
        RenameStep(rename={"country": "cc", "absent": "x"}),
        DropStep(drop=["customer.vip"]),
        RouteStep(route=Route(field="cc", topics={"DE": "orders.de"}, default="orders.other")),
    ]
    keep, value, topic = apply_transforms(steps, ORDER)
    assert keep and topic == "orders.de"
    assert value == {
        "id": 8,
        "amount": 250,
        "cc": "DE",
        "customer": {"email": "****"},
        "meta": {"source": "shop"},
    }
    assert ORDER["customer"] == {"email": "a@b.c", "vip": True}  # input untouched
    keep, _, _ = apply_transforms(steps, {**ORDER, "amount": 5})
    assert not keep
    _, _, topic = apply_transforms(steps[5:], {"cc": "US"})
    assert topic == "orders.other"


def test_source_record_encoding_and_cloudevents() -> None:
    record = SourceRecord(
        value={"n": 1, "name": "Zoë"},
        key={"id": 1},
        position={"id": 41},
        timestamp_ms=1714521600000,
        event_type="shop.order.created",
    )
    encoded = encode_source_record(record, connector="orders", kind="sql", topic="t", now_ms=5)
    again = encode_source_record(record, connector="orders", kind="sql", topic="t", now_ms=9)
    headers = dict(encoded.headers)
    assert encoded.value == '{"n":1,"name":"Zoë"}'.encode()
    assert encoded.key == b'{"id":1}'
    assert encoded.timestamp_ms == 1714521600000
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_source"] == b"backbone://orders"
    assert headers["ce_type"] == b"shop.order.created"
    assert headers["ce_time"] == b"2024-05-01T00:00:00.000Z"
    assert headers["content-type"] == b"application/json"
    assert headers["ce_id"] == dict(again.headers)["ce_id"]  # deterministic from position
    uuid.UUID(headers["ce_id"].decode())
    other = encode_source_record(
        SourceRecord(value=b"\x00raw", key="k", position={"id": 42}, topic="elsewhere"),
        connector="orders",
        kind="sql",
        topic="t",
        now_ms=1714521600000,
    )
    assert other.topic == "elsewhere" and other.value == b"\x00raw" and other.key == b"k"
    assert dict(other.headers)["content-type"] == b"application/octet-stream"
    assert dict(other.headers)["ce_type"] == b"backbone.sql"
    assert dict(other.headers)["ce_id"] != headers["ce_id"]
    tombstone = encode_source_record(
        SourceRecord(value=None, key="k", headers=[("ce_id", b"mine")]),
        connector="c",
        kind="k",
        topic="t",
        now_ms=0,
    )
    assert tombstone.value is None
    assert "content-type" not in dict(tombstone.headers)
    assert [v for n, v in tombstone.headers if n == "ce_id"] == [b"mine"]


def test_encoding_errors() -> None:
    with pytest.raises(DataError) as info:
        encode_source_record(
            SourceRecord(value={"x": object()}), connector="c", kind="k", topic="t", now_ms=0
        )
    assert str(info.value).startswith("value cannot be serialized as JSON: Object of type object")
    with pytest.raises(DataError, match=r"^key cannot be serialized as JSON: Object of type set"):
        encode_key({1, 2})
    with pytest.raises(DataError) as info:
        encode_event(Event(value=1), default_topic=None)
    assert str(info.value) == "the output event names no topic and the processor has no 'to'"


def test_event_encoding() -> None:
    out = encode_event(
        Event(value={"a": 1}, key="k", headers=[("content-type", b"x"), ("h", b"1")]),
        default_topic="to",
    )
    assert (out.topic, out.key, json.loads(out.value or b"")) == ("to", b"k", {"a": 1})
    assert out.headers == [("h", b"1"), ("content-type", b"application/json")]
    assert iso_time(0) == "1970-01-01T00:00:00.000Z"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b", "amount"]), children, max_size=3)
    ),
    max_leaves=8,
)


@given(text=st.text(max_size=40))
def test_filter_compiler_raises_only_value_error(text: str) -> None:
    try:
        compile_filter(text)
    except ValueError:
        pass


@given(
    expression=st.sampled_from(
        ["amount > 1", "a == b", "a in b", "not a.b", "a is None or b < 'x'", "-a < b"]
    ),
    value=json_values,
)
def test_filters_never_raise_on_any_json(expression: str, value: object) -> None:
    assert compile_filter(expression)(value) in (True, False)


def test_deeply_nested_filter_is_a_clear_error() -> None:
    with pytest.raises(ValueError) as info:
        compile_filter("not " * 5000 + "a")
    assert str(info.value) == f"filter expression {('not ' * 10)!r}... is nested too deeply"


@given(
    connector=st.text(min_size=1, max_size=20),
    position=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
        max_leaves=8,
    ).filter(lambda p: p is not None),
)
def test_event_id_is_uuid5_of_connector_and_position(connector: str, position: object) -> None:
    from backbone.events import _CE_NAMESPACE, _POSITION_JSON, SourceEncoder

    encoder = SourceEncoder(connector=connector, kind="k", topic="t")
    expected = uuid.uuid5(_CE_NAMESPACE, f"backbone://{connector}/" + _POSITION_JSON(position))
    assert encoder.event_id(position).decode() == str(expected)


def test_event_id_comes_from_the_identity_when_the_record_has_one() -> None:
    from backbone import SourceRecord
    from backbone.events import _CE_NAMESPACE, SourceEncoder

    encoder = SourceEncoder(connector="c", kind="k", topic="t")

    def ce_id(record: SourceRecord) -> str:
        [value] = [v for n, v in encoder.encode(record, 0).headers if n == "ce_id"]
        return value.decode()

    first = SourceRecord(value=1, position={"p": 1}, identity=["k1", "c"])
    second = SourceRecord(value=2, position={"p": 1}, identity=["k2", "c"])
    plain = SourceRecord(value=3, position={"p": 1})
    assert ce_id(first) == str(uuid.uuid5(_CE_NAMESPACE, 'backbone://c/{"identity":["k1","c"]}'))
    assert len({ce_id(first), ce_id(second), ce_id(plain)}) == 3  # one position, three ids
    assert ce_id(plain) == str(uuid.uuid5(_CE_NAMESPACE, 'backbone://c/{"p":1}'))


@given(
    identity=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
        max_leaves=8,
    ).filter(lambda p: p is not None),
)
def test_an_identity_given_as_its_json_text_has_the_same_event_id(identity: object) -> None:
    from backbone.events import _POSITION_JSON, IdentityJSON, SourceEncoder

    encoder = SourceEncoder(connector="c", kind="k", topic="t")
    text = IdentityJSON(_POSITION_JSON(identity))
    assert encoder.event_id(None, text) == encoder.event_id({"p": 1}, identity)

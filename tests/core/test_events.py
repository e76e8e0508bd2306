"""JSON on the record path (orjson with the standard library's results where they matter)."""

from __future__ import annotations

import json
import math

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from backbone.connector import SourceRecord
from backbone.errors import DataError
from backbone.events import (
    SourceEncoder,
    decode_value,
    encode_key,
    encode_value,
    loads,
    maybe_json,
)
from backbone.json_codec import orjson_exact

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children)
    ),
    max_leaves=12,
)
no_float_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children)
    ),
    max_leaves=12,
)
_STDLIB_VALUE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


@given(value=no_float_values.filter(lambda v: v is not None))  # None is a tombstone
def test_values_without_floats_encode_to_the_standard_librarys_bytes(value: object) -> None:
    assert encode_value(value) == _STDLIB_VALUE(value).encode()


@given(value=json_values.filter(lambda v: v is not None))
def test_values_round_trip(value: object) -> None:
    encoded = encode_value(value)
    assert encoded is not None
    assert json.loads(encoded) == value
    assert decode_value(encoded) == value


class Name(str):
    """A str subclass as a dict key, as sqlalchemy's column names (quoted_name) are."""


def test_keys_that_are_not_exactly_str_encode_as_the_standard_library_does() -> None:
    value = {Name("id"): 1, Name("customer"): "é", 2: True, None: 1.5, False: [1]}
    assert encode_value(value) == _STDLIB_VALUE(value).encode()
    assert encode_value(value) == b'{"id":1,"customer":"\xc3\xa9","2":true,"null":1.5,"false":[1]}'


def test_what_orjson_refuses_is_encoded_by_the_standard_library() -> None:
    big = {"n": 2**70, "m": -(2**70)}
    assert encode_value(big) == b'{"n":1180591620717411303424,"m":-1180591620717411303424}'
    assert encode_value({1: "a", None: "b"}) == b'{"1":"a","null":"b"}'
    deep: list[object] = []
    for _ in range(300):
        deep = [deep]
    assert encode_value(deep) == b"[" * 301 + b"]" * 301
    with pytest.raises(DataError) as info:
        encode_value({"x": object()})
    assert str(info.value).startswith("value cannot be serialized as JSON: Object of type object")
    circular: list[object] = []
    circular.append(circular)
    with pytest.raises(DataError, match="Circular reference detected"):
        encode_value(circular)


def test_nan_and_infinity_are_written_as_null() -> None:
    assert encode_value({"a": math.nan, "b": math.inf, "c": 1.5}) == b'{"a":null,"b":null,"c":1.5}'


@given(key=json_values.filter(lambda k: k is not None and not isinstance(k, str)))
def test_keys_keep_the_standard_librarys_exact_bytes(key: object) -> None:
    # keys choose partitions and compaction: their bytes never change
    expected = json.dumps(key, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    assert encode_key(key) == expected.encode()


@given(
    name=st.text(max_size=5),
    value=st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.floats(),
)
def test_one_entry_dict_keys_of_records_are_encode_keys_bytes(name: str, value: object) -> None:
    # the source encoder writes {"id": 42} without the JSON encoder: the same bytes
    encoder = SourceEncoder(connector="c", kind="k", topic="t")
    for key in ({name: value}, {"id": 7}, {name: value}):
        assert encoder.encode(SourceRecord(value=None, key=key, position=1), 0).key == encode_key(
            key
        )


def test_a_one_entry_key_that_is_not_utf8_is_a_data_error() -> None:
    encoder = SourceEncoder(connector="c", kind="k", topic="t")
    with pytest.raises(DataError, match="key cannot be serialized as JSON"):
        encoder.encode(SourceRecord(value=None, key={"id": "\ud800"}, position=1), 0)


def test_keys_that_cannot_be_json_are_data_errors() -> None:
    assert (
        encode_key({"b": math.nan, "a": [2**70, Name("x")]})
        == b'{"a":[1180591620717411303424,"x"],"b":NaN}'
    )
    with pytest.raises(DataError) as info:
        encode_key({"x": object()})
    assert str(info.value) == (
        "key cannot be serialized as JSON: Object of type object is not JSON serializable"
    )
    circular: list[object] = []
    circular.append(circular)
    with pytest.raises(DataError) as info:
        encode_key(circular)
    assert str(info.value) == "key cannot be serialized as JSON: it contains itself"


def test_decoding_numbers_beyond_64_bits_is_exact() -> None:
    assert decode_value(b'{"n": 18446744073709551616}') == {"n": 2**64}
    assert decode_value(b"[-9223372036854775809, 1]") == [-(2**63) - 1, 1]
    assert loads(b"123456789012345678901234567890", strict=True) == 123456789012345678901234567890
    assert decode_value(b'{"card": "12345678901234567890"}') == {"card": "12345678901234567890"}


def test_a_batch_with_a_run_of_19_digits_is_not_left_to_orjson() -> None:
    assert orjson_exact([])
    assert orjson_exact([b'{"n": 184467440737095516}', b"[1]", b'"2024-05-01T12:00:00Z"'])
    assert not orjson_exact([b"[1]", b'{"n": 1844674407370955161}'])  # 19 digits
    assert not orjson_exact([b"-9223372036854775809"])
    assert not orjson_exact([b'{"card": "12345678901234567890"}'])  # in a string: json reads it
    assert not orjson_exact([b"0.1234567890123456789"])
    assert orjson_exact([b"1234567890", b"123456789"])  # a run never spans two documents
    assert orjson_exact([b"{not json"])  # orjson refuses it: the caller falls back to loads


wide_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**17, max_value=10**22)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet="0123456789 x", max_size=24),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children)
    ),
    max_leaves=8,
)


@given(documents=st.lists(wide_values.map(lambda v: json.dumps(v).encode()), max_size=5))
def test_orjson_reads_a_batch_it_is_exact_for_as_loads_does(documents: list[bytes]) -> None:
    exact = orjson_exact(documents)
    assert exact == all(orjson_exact([document]) for document in documents)
    for document in documents:
        if exact:  # repr: an int read as a float, or -0.0 as 0, would show
            assert repr(orjson.loads(document)) == repr(loads(document))
        assert repr(loads(document)) == repr(json.loads(document))


def test_lenient_and_strict_decoding() -> None:
    assert math.isnan(decode_value(b'{"x": NaN}')["x"])
    assert decode_value(b"Infinity") == math.inf
    assert decode_value(json.dumps({"a": "é"}).encode("utf-16")) == {"a": "é"}
    assert decode_value(b"\xef\xbb\xbf[1]") == [1]
    with pytest.raises(ValueError):
        loads(b'{"x": NaN}', strict=True)
    assert decode_value(b"key-5") == b"key-5"
    assert decode_value(b"fals") == b"fals"
    assert decode_value(b" true \n") is True
    assert decode_value(b"") == b""
    assert decode_value(b"\xff\x00") == b"\xff\x00"


@given(data=st.binary(max_size=12) | st.text(max_size=12).map(str.encode))
def test_maybe_json_never_rejects_what_the_standard_library_reads(data: bytes) -> None:
    try:
        json.loads(data)
    except ValueError:
        return
    assert maybe_json(data)


@given(value=json_values)
def test_maybe_json_accepts_every_json_document(value: object) -> None:
    for text in (json.dumps(value), json.dumps(value, indent=1), f" {json.dumps(value)} "):
        assert maybe_json(text.encode())

"""The ``__consumer_offsets`` record codec (``backbone.broker.groups.records``): round
trips, all bytes consumed, and arbitrary bytes raise only ValueError."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from backbone.broker.groups.records import (
    GroupKey,
    GroupMetadata,
    MemberMetadata,
    OffsetKey,
    OffsetValue,
    decode_group_metadata,
    decode_key,
    decode_offset_value,
    encode_group_metadata,
    encode_key,
    encode_offset_value,
    partition_for,
)

names = st.text(max_size=20)
int32 = st.integers(-(2**31), 2**31 - 1)
int64 = st.integers(-(2**63), 2**63 - 1)
members = st.builds(
    MemberMetadata,
    names,
    st.none() | names,
    names,
    names,
    st.integers(0, 2**31 - 1),
    st.integers(0, 2**31 - 1),
    st.binary(max_size=30),
    st.binary(max_size=30),
)
groups = st.builds(
    GroupMetadata,
    names,
    int32,
    st.none() | names,
    st.none() | names,
    int64,
    st.lists(members, max_size=4).map(tuple),
)


@given(key=st.builds(OffsetKey, names, names, int32) | st.builds(GroupKey, names))
def test_keys_round_trip(key: OffsetKey | GroupKey) -> None:
    assert decode_key(encode_key(key)) == key


@given(value=st.builds(OffsetValue, int64, int32, names, int64))
def test_offset_values_round_trip(value: OffsetValue) -> None:
    assert decode_offset_value(encode_offset_value(value)) == value


@given(value=groups)
def test_group_metadata_round_trips(value: GroupMetadata) -> None:
    assert decode_group_metadata(encode_group_metadata(value)) == value


@given(data=st.binary(max_size=80))
def test_arbitrary_bytes_raise_only_value_errors(data: bytes) -> None:
    for decoder in (decode_key, decode_offset_value, decode_group_metadata):
        try:
            decoder(data)
        except ValueError:
            pass


def test_partition_of_a_group_is_kafkas() -> None:
    # Java: "a".hashCode() = 97, "hello".hashCode() = 99162322, "polygenelubricants" = MIN_VALUE
    assert partition_for("a", 50) == 97 % 50
    assert partition_for("hello", 50) == 99162322 % 50
    assert partition_for("polygenelubricants", 50) == 0  # Utils.abs(MIN_VALUE) = 0
    assert {partition_for(g, 1) for g in ("", "x", "Ω")} == {0}

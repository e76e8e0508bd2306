"""Fuzzing the codec: hostile bytes may only ever raise CodecError, never anything else,
for every generated message and version, for the request header, and for every strict
prefix or single-byte corruption of a valid encoding."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backbone.broker.protocol import CodecError, Message, read_request_header
from tests.broker.test_protocol import ALL, message_strategy

IDS = [c.__name__ for c in ALL]


def decode_or_codec_error(cls: type[Message], data: bytes, version: int) -> None:
    """Decode; a CodecError is fine, any other exception fails the test. A successful
    decode must re-encode (the decoded value is well-formed)."""
    try:
        msg, end = cls.decode(memoryview(data), 0, version)
    except CodecError:
        return
    assert 0 <= end <= len(data)
    msg.encode(version)


@pytest.mark.parametrize("cls", ALL, ids=IDS)
@settings(max_examples=12, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), raw=st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_codec_error(cls: type[Message], data, raw: bytes) -> None:
    version = data.draw(st.integers(cls.min_version, cls.max_version), label="version")
    decode_or_codec_error(cls, raw, version)


@pytest.mark.parametrize("cls", ALL, ids=IDS)
@settings(max_examples=8, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_truncated_or_corrupted_encodings_raise_only_codec_error(cls: type[Message], data) -> None:
    version = data.draw(st.integers(cls.min_version, cls.max_version), label="version")
    encoded = data.draw(message_strategy(cls, version)).encode(version)
    # every strict prefix follows the full decode's path and runs out of bytes
    for cut in range(len(encoded)):
        with pytest.raises(CodecError, match=rf"^malformed {cls.__name__} v{version}: "):
            cls.decode(memoryview(encoded[:cut]), 0, version)
    if encoded:
        at = data.draw(st.integers(0, len(encoded) - 1), label="at")
        byte = data.draw(st.integers(0, 255), label="byte")
        corrupted = bytearray(encoded)
        corrupted[at] = byte
        decode_or_codec_error(cls, bytes(corrupted), version)


@settings(max_examples=300)
@given(raw=st.binary(max_size=64))
def test_request_header_from_arbitrary_bytes(raw: bytes) -> None:
    try:
        header, offset = read_request_header(memoryview(raw))
    except CodecError:
        return
    assert 8 <= offset <= len(raw)
    assert -(2**15) <= header.api_key < 2**15


@pytest.mark.parametrize("cls", ALL[:3], ids=IDS[:3])
def test_versions_outside_the_schema_are_codec_errors(cls: type[Message]) -> None:
    for version in (cls.min_version - 1, cls.max_version + 1, -1):
        with pytest.raises(CodecError, match=r"version -?\d+ is not supported"):
            cls.decode(b"\x00" * 16, 0, version)

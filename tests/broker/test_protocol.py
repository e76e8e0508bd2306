"""The codec (backbone.broker.protocol): round trips, headers, framing, and byte-for-byte
agreement with kafka-python's own protocol classes (built from the same JSON schemas)."""

from __future__ import annotations

import functools
import importlib
import pkgutil
import struct
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import backbone.broker.protocol as protocol
from backbone.broker.protocol import (
    API_NAMES,
    REQUESTS,
    RESPONSES,
    CodecError,
    FetchResponse,
    FieldSpec,
    Message,
    ProduceRequest,
    RequestHeader,
    _generated,
    _wire,
    encode_request_header,
    encode_response,
    generate,
    read_request_header,
    read_response_header,
    request_header_version,
    response_header_version,
)

MESSAGES: list[type[Message]] = sorted(
    (getattr(_generated, n) for n in _generated.__all__ if n.endswith(("Request", "Response"))),
    key=lambda c: c.__name__,
)
DATA = [
    getattr(_generated, n) for n in ("ConsumerProtocolAssignment", "ConsumerProtocolSubscription")
]
ALL = MESSAGES + DATA
PAIRS = [(cls, v) for cls in ALL for v in range(cls.min_version, cls.max_version + 1)]

INTS = {
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
}


def is_flexible(cls: type[Message], version: int) -> bool:
    return cls.flexible_from is not None and version >= cls.flexible_from


def on_wire(f: FieldSpec, version: int, flexible: bool) -> bool:
    """Whether field ``f`` is encoded at all in ``version`` (regular or tagged)."""
    if not f.present(version):
        return False
    if f.tag is None:
        return True
    return flexible and f.tagged is not None and f.tagged[0] <= version <= f.tagged[1]


def _scalar(kind: str) -> st.SearchStrategy[Any]:
    if kind in INTS:
        return st.integers(*INTS[kind])
    return {
        "bool": st.booleans(),
        "float64": st.floats(allow_nan=False),
        "string": st.text(max_size=12),
        "bytes": st.binary(max_size=12),
        "records": st.binary(max_size=40),
        "uuid": st.uuids(),
    }[kind]


def value_strategy(f: FieldSpec, version: int, flexible: bool) -> st.SearchStrategy[Any]:
    """Values of field ``f`` that are legal in ``version``."""
    kind = f.type.removeprefix("[]")
    elem = struct_strategy(f.struct, version, flexible) if kind == "struct" else _scalar(kind)
    base = st.lists(elem, max_size=3) if f.type.startswith("[]") else elem
    return st.none() | base if f.is_nullable(version) else base


@functools.cache
def struct_strategy(cls: type, version: int, flexible: bool) -> st.SearchStrategy[Any]:
    """Instances of ``cls`` (a message or nested struct) valid for ``version``: every field
    on the wire gets a random legal value, every other field keeps its schema default."""
    kwargs = {
        f.name: value_strategy(f, version, flexible)
        for f in cls.FIELDS
        if on_wire(f, version, flexible)
    }
    return st.builds(cls, **kwargs)


def message_strategy(cls: type[Message], version: int) -> st.SearchStrategy[Any]:
    return struct_strategy(cls, version, is_flexible(cls, version))


# ------------------------------------------------------------------ round trips


@pytest.mark.parametrize(("cls", "version"), PAIRS, ids=[f"{c.__name__}-v{v}" for c, v in PAIRS])
@settings(max_examples=8, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_round_trip_every_message_and_version(cls: type[Message], version: int, data) -> None:
    msg = data.draw(message_strategy(cls, version))
    encoded = msg.encode(version)
    decoded, end = cls.decode(memoryview(b"pre" + encoded), 3, version)
    assert end == len(encoded) + 3
    assert decoded == msg
    chunks = msg.encode_chunks(version)
    assert b"".join(bytes(c) for c in chunks) == encoded
    assert decoded.encode(version) == encoded


def test_every_api_the_broker_needs_is_generated() -> None:
    needed = {
        0: "Produce", 1: "Fetch", 2: "ListOffsets", 3: "Metadata", 8: "OffsetCommit",
        9: "OffsetFetch", 10: "FindCoordinator", 11: "JoinGroup", 12: "Heartbeat",
        13: "LeaveGroup", 14: "SyncGroup", 15: "DescribeGroups", 16: "ListGroups",
        17: "SaslHandshake", 18: "ApiVersions", 19: "CreateTopics", 20: "DeleteTopics",
        21: "DeleteRecords", 22: "InitProducerId", 23: "OffsetForLeaderEpoch",
        32: "DescribeConfigs", 33: "AlterConfigs", 37: "CreatePartitions", 42: "DeleteGroups",
        44: "IncrementalAlterConfigs", 47: "OffsetDelete", 60: "DescribeCluster",
        36: "SaslAuthenticate", 61: "DescribeProducers",
    }  # fmt: skip
    for key, name in needed.items():
        assert API_NAMES[key] == name
        assert REQUESTS[key].__name__ == f"{name}Request"
        assert RESPONSES[key].__name__ == f"{name}Response"
        assert REQUESTS[key].api_key == RESPONSES[key].api_key == key
    assert len(REQUESTS) == len(RESPONSES) == len(API_NAMES) == 52


def test_registries_are_read_only_and_load_classes_on_demand() -> None:
    assert REQUESTS.get(999) is None and 999 not in REQUESTS
    assert list(REQUESTS) == list(RESPONSES) == list(API_NAMES)
    assert REQUESTS[0] is ProduceRequest and RESPONSES[1] is FetchResponse
    assert dict(REQUESTS.items())[18] is protocol.ApiVersionsRequest
    with pytest.raises(
        TypeError, match="'MessageRegistry' object does not support item assignment"
    ):
        REQUESTS[0] = FetchResponse  # type: ignore[index]
    with pytest.raises(AttributeError, match=r"has no attribute 'NoSuchRequest'$"):
        _ = protocol.NoSuchRequest


def test_class_vars_and_nested_structs_follow_the_schema() -> None:
    assert (ProduceRequest.api_key, ProduceRequest.min_version, ProduceRequest.max_version) == (
        0,
        3,
        13,
    )
    assert ProduceRequest.flexible_from == 9
    assert protocol.SaslHandshakeRequest.flexible_from is None
    assert protocol.ApiVersionsRequest.flexible_from == 3
    # every nested struct is reachable from the message class by its JSON struct name
    assert ProduceRequest.TopicProduceData.__qualname__ == "ProduceRequest.TopicProduceData"
    assert protocol.ProduceResponse.PartitionProduceResponse is (
        protocol.ProduceResponse.TopicProduceResponse.PartitionProduceResponse
    )
    # schema defaults everywhere, so responses are built from keyword arguments only
    part = protocol.ProduceResponse.PartitionProduceResponse(index=2)
    assert (part.error_code, part.base_offset, part.log_append_time_ms) == (0, 0, -1)
    assert part.record_errors == [] and part.error_message is None
    assert protocol.MetadataRequest().topics == []
    assert FetchResponse.PartitionData().preferred_read_replica == -1
    assert protocol.FetchRequest().replica_id == -1
    assert protocol.CreateTopicsRequest.CreatableTopic().replication_factor == 0


def _produce(records: Any) -> ProduceRequest:
    return ProduceRequest(
        acks=-1,
        timeout_ms=1500,
        topic_data=[
            ProduceRequest.TopicProduceData(
                name="orders",
                partition_data=[ProduceRequest.PartitionProduceData(index=0, records=records)],
            )
        ],
    )


def test_produce_v3_exact_bytes_and_records_stay_a_view_of_the_frame() -> None:
    encoded = _produce(b"BATCH").encode(3)
    assert encoded == (
        b"\xff\xff"  # transactional_id null
        b"\xff\xff\x00\x00\x05\xdc"  # acks -1, timeout 1500
        b"\x00\x00\x00\x01\x00\x06orders"
        b"\x00\x00\x00\x01\x00\x00\x00\x00"
        b"\x00\x00\x00\x05BATCH"
    )
    frame = bytearray(encoded)
    decoded, end = ProduceRequest.decode(memoryview(frame), 0, 3)
    records = decoded.topic_data[0].partition_data[0].records
    assert isinstance(records, memoryview) and bytes(records) == b"BATCH"
    frame[-5:] = b"XXXXX"  # a view, not a copy
    assert bytes(records) == b"XXXXX" and end == len(frame)


def test_produce_v9_flexible_exact_bytes() -> None:
    assert _produce(b"B").encode(9) == (
        b"\x00"  # compact null string
        b"\xff\xff\x00\x00\x05\xdc"
        b"\x02\x07orders"  # compact array of 1, compact string
        b"\x02\x00\x00\x00\x00\x02B\x00"  # partition 0, records len 1, no tags
        b"\x00"  # topic tags
        b"\x00"  # message tags
    )


class FileSliceLike:
    """Stands in for the log's FileSlice: len() and read(), no buffer protocol."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def read(self) -> bytes:
        return self.data


@pytest.mark.parametrize("version", [4, 11, 12, 16])
def test_fetch_response_encode_chunks_passes_records_through(version: int) -> None:
    payloads = [FileSliceLike(b"one"), memoryview(b"two!"), b"3", None]
    resp = FetchResponse(
        responses=[
            FetchResponse.FetchableTopicResponse(
                topic="t",
                topic_id=uuid.UUID(int=7),
                partitions=[
                    FetchResponse.PartitionData(partition_index=i, high_watermark=10, records=r)
                    for i, r in enumerate(payloads)
                ],
            )
        ]
    )
    chunks = resp.encode_chunks(version)
    assert [c for c in chunks if c is payloads[0] or c is payloads[1] or c is payloads[2]] == (
        payloads[:3]
    )
    assert all(isinstance(c, bytes) for c in chunks if c not in payloads[:3])
    joined = b"".join(c.read() if isinstance(c, FileSliceLike) else bytes(c) for c in chunks)
    assert joined == resp.encode(version)
    decoded, end = FetchResponse.decode(joined, 0, version)
    assert end == len(joined)
    got = [p.records for p in decoded.responses[0].partitions]
    assert [None if g is None else bytes(g) for g in got] == [b"one", b"two!", b"3", None]


def test_tagged_fields_known_unknown_and_defaults() -> None:
    # FetchResponse v12+: PartitionData.DivergingEpoch is tagged field 0.
    part = FetchResponse.PartitionData(partition_index=1)
    plain = FetchResponse(responses=[FetchResponse.FetchableTopicResponse("t", partitions=[part])])
    no_tags = plain.encode(12)
    part.diverging_epoch = FetchResponse.EpochEndOffset(epoch=5, end_offset=99)
    tagged = plain.encode(12)
    assert len(tagged) > len(no_tags)  # a non-default tagged field is written ...
    decoded, _ = FetchResponse.decode(tagged, 0, 12)
    assert decoded.responses[0].partitions[0].diverging_epoch.end_offset == 99
    # ... and one equal to its default is not
    part.diverging_epoch = FetchResponse.EpochEndOffset()
    assert plain.encode(12) == no_tags
    # unknown tags (here 7 and 9 on the top-level struct) are skipped
    body = protocol.ApiVersionsRequest(client_software_name="x", client_software_version="1")
    enc = body.encode(3)
    assert enc[-1:] == b"\x00"
    with_unknown = enc[:-1] + b"\x02\x07\x03abc\x09\x00"
    decoded_req, end = protocol.ApiVersionsRequest.decode(with_unknown, 0, 3)
    assert decoded_req == body and end == len(with_unknown)


def test_field_absent_from_a_version_is_skipped_on_encode() -> None:
    # TopicId exists from Produce v13 only; Name up to v12 (both ignorable)
    req = _produce(b"x")
    req.topic_data[0].topic_id = uuid.UUID(int=1)
    decoded, _ = ProduceRequest.decode(req.encode(12), 0, 12)
    assert decoded.topic_data[0].topic_id == uuid.UUID(int=0)
    assert decoded.topic_data[0].name == "orders"


# ------------------------------------------------------------------ errors


def test_unsupported_version_is_a_codec_error() -> None:
    with pytest.raises(
        CodecError, match=r"^ProduceRequest version 2 is not supported \(supported versions 3-13\)$"
    ):
        ProduceRequest.decode(b"", 0, 2)
    with pytest.raises(CodecError, match=r"^ProduceRequest version 14 is not supported"):
        _produce(b"").encode(14)


def test_decode_errors_name_the_fault() -> None:
    with pytest.raises(CodecError, match=r"^malformed ProduceRequest v3: unpack_from requires"):
        ProduceRequest.decode(b"\xff\xff\x00", 0, 3)
    # non-nullable topic name given as null
    bad = b"\xff\xff" + b"\xff\xff\x00\x00\x05\xdc" + b"\x00\x00\x00\x01" + b"\xff\xff" + bytes(8)
    with pytest.raises(
        CodecError,
        match=r"^malformed ProduceRequest v3: null string at offset 12 where the schema forbids",
    ):
        ProduceRequest.decode(bad, 0, 3)
    # array count bigger than the frame
    huge = b"\xff\xff" + b"\xff\xff\x00\x00\x05\xdc" + b"\x7f\xff\xff\xff"
    with pytest.raises(
        CodecError,
        match=r"v3: array of 2147483647 elements at offset 12 exceeds the 0 bytes left$",
    ):
        ProduceRequest.decode(huge, 0, 3)
    # a records length past the end of the frame
    short = _produce(b"BATCH").encode(3)[:-1]
    with pytest.raises(
        CodecError,
        match=r"^malformed ProduceRequest v3: truncated: 5 bytes needed at offset 32, 4 left$",
    ):
        ProduceRequest.decode(short, 0, 3)
    # invalid UTF-8 in a string
    bad_utf8 = bytearray(_produce(b"").encode(3))
    bad_utf8[14] = 0xFF
    with pytest.raises(
        CodecError, match=r"^malformed ProduceRequest v3: 'utf-8' codec can't decode"
    ):
        ProduceRequest.decode(bytes(bad_utf8), 0, 3)
    # a varint longer than 5 bytes
    with pytest.raises(
        CodecError, match=r"^malformed ProduceRequest v9: unsigned varint is longer than 5 bytes$"
    ):
        ProduceRequest.decode(b"\xff\xff\xff\xff\xff\xff\x01", 0, 9)


def test_encode_errors_name_the_fault() -> None:
    with pytest.raises(
        CodecError,
        match=r"^cannot encode ProduceRequest v3: field topic_data is not nullable in version 3$",
    ):
        ProduceRequest(topic_data=None).encode(3)
    with pytest.raises(CodecError, match=r"^cannot encode ProduceRequest v3: .*format requires"):
        ProduceRequest(acks=40000).encode(3)
    with pytest.raises(
        CodecError,
        match=r"^cannot encode ProduceRequest v3: string of 40000 bytes exceeds the int16 length",
    ):
        ProduceRequest(transactional_id="x" * 40000).encode(3)
    with pytest.raises(
        CodecError, match=r"^cannot encode ProduceRequest v9: null string where the schema forbids"
    ):
        ProduceRequest(topic_data=[ProduceRequest.TopicProduceData(name=None)]).encode(9)
    with pytest.raises(CodecError, match=r"^cannot encode FetchResponse v4: 'NoneType' object"):
        FetchResponse(responses=[None]).encode(4)


# ------------------------------------------------------------------ headers and framing


def test_request_header_versions_follow_flexible_versions() -> None:
    assert request_header_version(0, 8) == 1
    assert request_header_version(0, 9) == 2
    assert request_header_version(18, 2) == 1
    assert request_header_version(18, 3) == 2
    assert request_header_version(18, 99) == 2  # newer ApiVersions: still flexible
    assert request_header_version(17, 1) == 1  # SaslHandshake: never flexible
    assert request_header_version(7, 0) == 0  # ControlledShutdown v0
    assert request_header_version(999, 5) == 1  # unknown api key
    assert response_header_version(1, 12) == 1
    assert response_header_version(1, 11) == 0
    assert response_header_version(18, 3) == 0  # ApiVersions: always v0
    assert response_header_version(18, 4) == 0


@pytest.mark.parametrize(
    ("api_key", "api_version", "client_id"),
    [(0, 3, "rdkafka"), (0, 9, "producer-1"), (18, 3, None), (18, 0, ""), (999, 1, "x")],
)
def test_request_header_round_trip(api_key: int, api_version: int, client_id: str | None) -> None:
    header = RequestHeader(api_key, api_version, 42, client_id)
    encoded = encode_request_header(header)
    assert read_request_header(memoryview(encoded + b"BODY")) == (header, len(encoded))


def test_request_header_v2_exact_bytes_skips_unknown_tags() -> None:
    frame = b"\x00\x12\x00\x03\x00\x00\x00\x07\x00\x03abc" + b"\x01\x05\x02hi" + b"BODY"
    header, offset = read_request_header(frame)
    assert header == RequestHeader(18, 3, 7, "abc")
    assert frame[offset:] == b"BODY"
    # header v1 has no tagged fields: the same bytes leave them in the body
    header1, offset1 = read_request_header(b"\x00\x12\x00\x02\x00\x00\x00\x07\x00\x03abcBODY")
    assert header1 == RequestHeader(18, 2, 7, "abc") and offset1 == 13


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (b"\x00\x00\x00", r"^malformed request header: unpack_from requires"),
        (
            b"\x00\x00\x00\x03\x00\x00\x00\x01\x00\x05ab",
            r"^malformed request header: truncated: 5 bytes needed at offset 10, 2 left$",
        ),
        (
            b"\x00\x00\x00\x09\x00\x00\x00\x01\xff\xff\x02",
            r"^malformed request header: truncated: a varint runs past the end of the frame$",
        ),
        (
            b"\x00\x00\x00\x03\x00\x00\x00\x01\x00\x01\xff",
            r"^malformed request header: 'utf-8' codec",
        ),
    ],
)
def test_malformed_request_header(frame: bytes, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        read_request_header(frame)


def test_encode_response_frames_v0_and_v1() -> None:
    body = [b"ab", memoryview(b"cd"), FileSliceLike(b"efg")]
    v0 = encode_response(0, 5, body)
    assert v0[0] == struct.pack(">ii", 4 + 7, 5) and v0[1:] == body
    v1 = encode_response(1, 5, body)
    assert v1[0] == struct.pack(">ii", 5 + 7, 5) + b"\x00" and v1[1:] == body
    assert read_response_header(v1[0][4:], 1) == (5, 5)
    assert read_response_header(v0[0][4:], 0) == (5, 4)


def test_api_versions_response_v3_with_v0_header_decodes_in_kafka_python() -> None:
    from kafka.protocol.metadata import ApiVersionsResponse as KafkaApiVersionsResponse

    resp = protocol.ApiVersionsResponse(
        api_keys=[protocol.ApiVersionsResponse.ApiVersion(api_key=0, min_version=3, max_version=11)]
    )
    framed = b"".join(encode_response(response_header_version(18, 3), 9, resp.encode_chunks(3)))
    assert struct.unpack(">i", framed[:4])[0] == len(framed) - 4
    theirs = KafkaApiVersionsResponse.decode(framed[8:], version=3)
    assert [(k.api_key, k.min_version, k.max_version) for k in theirs.api_keys] == [(0, 3, 11)]


# ------------------------------------------------------------------ kafka-python cross-check


def _kafka_python_classes() -> dict[str, type]:
    import kafka.protocol
    from kafka.protocol.api_message import ApiMessage

    for info in pkgutil.walk_packages(kafka.protocol.__path__, "kafka.protocol."):
        importlib.import_module(info.name)
    found: dict[str, type] = {}
    todo = list(ApiMessage.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if getattr(cls, "_class_version", None) is None:
            found[cls.__name__] = cls
    return found


@functools.cache
def kafka_python_classes() -> dict[str, type]:
    return _kafka_python_classes()


def to_kafka_python(obj: Any, kcls: type, version: int, flexible: bool, top: bool) -> Any:
    """Our message as kafka-python's DataContainer (tagged fields only when not default)."""
    defaults = type(obj)()
    kwargs = {}
    for f, kname in zip(type(obj).FIELDS, kcls.fields, strict=True):
        if not on_wire(f, version, flexible):
            continue
        value = getattr(obj, f.name)
        if f.tag is not None and value == getattr(defaults, f.name):
            continue
        if f.struct is not None and value is not None:
            sub = getattr(kcls, f.struct.__name__)
            if f.type == "[]struct":
                value = [to_kafka_python(v, sub, version, flexible, False) for v in value]
            else:
                value = to_kafka_python(value, sub, version, flexible, False)
        if kname == "authorized_operations" and isinstance(value, int):
            value = _bitfield(value)
        kwargs[kname] = value
    return kcls(version=version, **kwargs) if top else kcls(**kwargs)


# kafka-python renames these JSON fields by hand (kafka/protocol/admin/cluster.py, ...)
KAFKA_PYTHON_RENAMES = {
    "DescribeClusterResponse.cluster_authorized_operations": "authorized_operations",
    "MetadataResponse.cluster_authorized_operations": "authorized_operations",
    "MetadataResponse.MetadataResponseTopic.topic_authorized_operations": "authorized_operations",
}


def _bitfield(value: int) -> set[int] | None:
    """kafka-python patches authorized-operations int32 fields into sets of bit numbers."""
    bits = {i for i in range(32) if (value >> i) & 1}
    return None if bits == {31} else bits


KAFKA_PYTHON_NAMES = sorted(c.__name__ for c in MESSAGES)


@pytest.mark.parametrize("name", KAFKA_PYTHON_NAMES)
def test_field_names_match_kafka_python(name: str) -> None:
    ours = getattr(protocol, name)
    theirs = kafka_python_classes()[name]

    def check(o: type, t: type) -> None:
        renamed = [KAFKA_PYTHON_RENAMES.get(f"{o.__qualname__}.{f.name}", f.name) for f in o.FIELDS]
        assert renamed == list(t.fields)
        for f in o.FIELDS:
            if f.struct is not None:
                check(f.struct, getattr(t, f.struct.__name__))

    check(ours, theirs)


@pytest.mark.parametrize("name", KAFKA_PYTHON_NAMES)
@settings(max_examples=6, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_encoding_matches_kafka_python_byte_for_byte(name: str, data) -> None:
    cls = getattr(protocol, name)
    kcls = kafka_python_classes()[name]
    version = data.draw(st.integers(cls.min_version, cls.max_version), label="version")
    msg = data.draw(message_strategy(cls, version))
    flexible = is_flexible(cls, version)
    theirs = bytes(to_kafka_python(msg, kcls, version, flexible, True).encode(version=version))
    assert msg.encode(version) == theirs
    assert cls.decode(theirs, 0, version) == (msg, len(theirs))


@pytest.mark.parametrize(
    ("name", "version"),
    [("ProduceRequest", 3), ("ProduceRequest", 9), ("FetchResponse", 11), ("FetchResponse", 12),
     ("MetadataResponse", 12), ("ApiVersionsResponse", 3), ("JoinGroupRequest", 6),
     ("OffsetCommitRequest", 8), ("CreateTopicsRequest", 5), ("DescribeConfigsResponse", 4)],
)  # fmt: skip
def test_flexible_and_plain_versions_match_kafka_python(name: str, version: int) -> None:
    """A handful of hot or flexible APIs, every field populated."""
    cls = getattr(protocol, name)
    msg = _find_full_example(cls, version)
    if name == "ApiVersionsResponse":
        msg.error_code = 0  # kafka-python decodes an error response as v0
    flexible = is_flexible(cls, version)
    kcls = kafka_python_classes()[name]
    theirs = bytes(to_kafka_python(msg, kcls, version, flexible, True).encode(version=version))
    assert msg.encode(version) == theirs
    kafka_decoded = kcls.decode(theirs, version=version)
    assert kafka_decoded == to_kafka_python(msg, kcls, version, flexible, True)


def _find_full_example(cls: type[Message], version: int) -> Any:
    """A deterministic instance with non-empty arrays and non-default scalars."""

    def build(scls: type) -> Any:
        kwargs = {}
        for i, f in enumerate(scls.FIELDS):
            if not on_wire(f, version, is_flexible(cls, version)):
                continue
            kind = f.type.removeprefix("[]")
            if kind == "struct":
                value: Any = build(f.struct)
            elif kind in INTS:
                value = i + 1
            else:
                value = {
                    "bool": True,
                    "float64": 1.5,
                    "string": f"s{i}",
                    "bytes": b"b%d" % i,
                    "records": b"RECORDS%d" % i,
                    "uuid": uuid.UUID(int=i + 1),
                }[kind]
            kwargs[f.name] = [value, value] if f.type.startswith("[]") else value
        return scls(**kwargs)

    return build(cls)


# ------------------------------------------------------------------ generator and primitives


def test_checked_in_code_matches_the_generator_and_installed_schemas(tmp_path: Path) -> None:
    assert generate.main(["--out", str(tmp_path)]) == 0
    checked_in = Path(generate.__file__).parent / "_generated"
    fresh = {p.name: p.read_text(encoding="utf-8") for p in tmp_path.glob("*.py")}
    current = {p.name: p.read_text(encoding="utf-8") for p in checked_in.glob("*.py")}
    assert sorted(fresh) == sorted(current)
    stale = [name for name in fresh if fresh[name] != current[name]]
    assert stale == [], "run: .venv/bin/python -m backbone.broker.protocol.generate"


SHARED_SCHEMAS = Path(__file__).resolve().parents[3] / "shared" / "kafka-protocol" / "message"


@pytest.mark.skipif(not SHARED_SCHEMAS.is_dir(), reason="no reference copy of Kafka's schemas")
def test_wheel_schemas_have_the_reference_wire_layout_for_every_common_version() -> None:
    notes = generate.compare(generate.schema_dir(), SHARED_SCHEMAS)
    assert [n for n in notes if "DIFFERS" in n] == []
    assert "ProduceRequest.json: validVersions (3, 13) here, (0, 11) there" in notes


@given(n=st.integers(0, 2**32 - 1))
def test_unsigned_varint_round_trip(n: int) -> None:
    data = _wire.write_uvarint(n)
    assert _wire.read_uvarint(memoryview(data), 0) == (n, len(data))
    assert len(data) <= 5


@given(n=st.integers(-(2**31), 2**31 - 1), m=st.integers(-(2**63), 2**63 - 1))
def test_zigzag_varint_and_varlong_round_trip(n: int, m: int) -> None:
    data = _wire.write_varint(n) + _wire.write_varlong(m)
    value, pos = _wire.read_varint(memoryview(data), 0)
    assert value == n
    assert _wire.read_varlong(memoryview(data), pos) == (m, len(data))


def test_varint_examples_and_limits() -> None:
    assert _wire.write_varint(0) == b"\x00"
    assert _wire.write_varint(-1) == b"\x01"
    assert _wire.write_varint(1) == b"\x02"
    assert _wire.write_varint(-64) == b"\x7f"
    assert _wire.write_uvarint(300) == b"\xac\x02"
    with pytest.raises(CodecError, match=r"^4294967296 does not fit an unsigned varint$"):
        _wire.write_uvarint(2**32)
    with pytest.raises(CodecError, match=r"^2147483648 does not fit a varint$"):
        _wire.write_varint(2**31)
    with pytest.raises(CodecError, match=r"^varlong is longer than 10 bytes$"):
        _wire.read_varlong(memoryview(b"\xff" * 11), 0)

"""backbone.broker.protocol: the Kafka wire-protocol codec, sans-I/O.

Bytes in, typed messages out; no sockets. The server calls
``read_request_header`` on each request frame, ``REQUESTS[api_key].decode`` on
the body, and ``encode_response(..., response.encode_chunks(version))`` on
the answer. The message classes are generated from Kafka's JSON message
schemas (``_generated/``, see ``generate.py``); their base classes are in
``_types.py``, the wire primitives in ``_wire.py``; headers and framing in
``_header.py``. Each generated module is
imported the first time one of its classes is used (``from
backbone.broker.protocol import ProduceRequest``, ``REQUESTS[0]``), which
keeps ``import backbone.broker`` cheap.

Deviations from the agreed "Codec" interface (BROKER_API.md): none in the API. Note that the
schemas in kafka-python 3.0.x are Kafka 4's, which dropped old versions:
ProduceRequest/Response are 3-13, Fetch 4-18, ListOffsets 1-11, OffsetCommit
2-10, OffsetFetch 1-10, CreateTopics 2-7, DeleteTopics 1-6, DescribeConfigs
1-4, OffsetForLeaderEpoch 2-4. ``Cls.decode`` raises CodecError for a version
outside ``min_version..max_version``. ``flexible_from`` is None for a schema
without flexible versions (SaslHandshake, OffsetDelete, ...). ``REQUESTS`` and
``RESPONSES`` are read-only ``Mapping[int, type[Message]]`` objects that import
a class on first lookup. Additions: ``encode_request_header`` and
``read_response_header`` (for clients and tests), ``Message`` / ``Struct``
base classes, and ``FieldSpec`` (each class's ``FIELDS`` ClassVar: the wire
facts of every schema field, used by the property tests).

Regenerate after a kafka-python upgrade with
``.venv/bin/python -m backbone.broker.protocol.generate`` (add
``--compare /path/to/kafka/message`` to diff the wire layouts against another
copy of the schemas); a test fails when the checked-in code is stale.
"""

from typing import TYPE_CHECKING, Any

from ._generated import API_NAMES, MODULES, REQUEST_NAMES, RESPONSE_NAMES
from ._header import (
    RequestHeader,
    encode_request_header,
    encode_response,
    read_request_header,
    read_response_header,
    request_header_version,
    response_header_version,
)
from ._registry import MessageRegistry, load_message
from ._types import CodecError, FieldSpec, Message, Records, RecordsSlice, Struct

REQUESTS: MessageRegistry = MessageRegistry(REQUEST_NAMES)
RESPONSES: MessageRegistry = MessageRegistry(RESPONSE_NAMES)

if TYPE_CHECKING:
    from ._generated import *  # noqa: F403

__all__ = [
    "API_NAMES",
    "REQUESTS",
    "RESPONSES",
    "CodecError",
    "FieldSpec",
    "Message",
    "Records",
    "RecordsSlice",
    "RequestHeader",
    "Struct",
    "encode_request_header",
    "encode_response",
    "read_request_header",
    "read_response_header",
    "request_header_version",
    "response_header_version",
    *MODULES,  # every generated message class, loaded on first access
]


def __getattr__(name: str) -> Any:
    """Generated message classes (``ProduceRequest`` ...) import their module on first use."""
    if name in MODULES:
        return load_message(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

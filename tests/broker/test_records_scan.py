"""The per-record walk of produced batches (``backbone.broker.log.records``): the C
extension and its pure-Python fallback give identical results on crafted sections for
every rule, on mutations of valid sections and on random bytes."""

from __future__ import annotations

import os
import random
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backbone.broker.errors import InvalidRecord
from backbone.broker.log import records
from tests.broker.crafted import header, record, varint

SCANNERS = [pytest.param(records.scan_py, id="python")]
if records.scan_c is not None:
    SCANNERS.append(pytest.param(records.scan_c, id="c"))


def test_the_c_walk_is_built_and_used() -> None:
    """`make` builds the extension (gcc and Python headers are part of the set-up); only
    BACKBONE_NO_EXTENSIONS turns it off."""
    if os.environ.get("BACKBONE_NO_EXTENSIONS"):
        assert records.IMPLEMENTATION == "python"
        return
    assert records.scan_c is not None, "the C extension backbone.broker.log._records is missing"
    assert records.IMPLEMENTATION == "c"


TWO = record(0, b"a", timestamp_delta=5) + record(1, b"b", key=None, timestamp_delta=-3)

CASES: list[tuple[str, bytes, int, tuple[int, int, int, int], str | None]] = [
    ("valid", TWO, 2, (0, -3, 5, 1), None),
    (
        "headers and null values",
        record(0, None, headers=header(b"h", None)) + record(1, b"", headers=header(b"", b"x")),
        2,
        (0, 0, 0, 0),
        None,
    ),
    (
        "fewer records than declared",
        TWO,
        3,
        (1, 2, 3, 0),
        "the batch declares 3 records but holds only 2",
    ),
    (
        "more records than declared",
        TWO,
        1,
        (12, 1, len(record(1, b"b", key=None, timestamp_delta=-3)), 0),
        f"{len(record(1, b'b', key=None, timestamp_delta=-3))} bytes follow the last of the "
        "batch's 1 records",
    ),
    (
        "offset delta repeated",
        record(0) + record(0),
        2,
        (5, 1, 0, 0),
        "record 1 has offset delta 0; it must be 1",
    ),
    (
        "offset delta skipping",
        record(0) + record(2),
        2,
        (5, 1, 2, 0),
        "record 1 has offset delta 2; it must be 1",
    ),
    (
        "2^30-byte key",
        record(0, key=b"k", key_length=2**30),
        1,
        (6, 0, 2**30, 4),
        "record 0: key length 1073741824 does not fit the 4 bytes left in the record",
    ),
    (
        "key length below -1",
        record(0, key=b"", key_length=-2),
        1,
        (6, 0, -2, 3),
        "record 0: key length -2 does not fit the 3 bytes left in the record",
    ),
    (
        "2^31 headers (a varint above 32 bits)",
        record(0, header_count=2**31),
        1,
        (13, 0, 0, 0),
        "record 0: a varint does not fit 32 bits (a varlong 64 bits)",
    ),
    (
        "varlong above 64 bits",
        varint(11) + b"\x00" + b"\xff" * 9 + b"\x02",
        1,
        (13, 0, 0, 0),
        "record 0: a varint does not fit 32 bits (a varlong 64 bits)",
    ),
    (
        "2^31 - 1 headers",
        record(0, header_count=2**31 - 1, headers=header(b"h", b"v")),
        1,
        (8, 0, 2**31 - 1, 4),
        "record 0: 2147483647 headers cannot fit the 4 bytes left in the record",
    ),
    (
        "negative header count (2^31 as a varint)",
        record(0, header_count=-(2**31)),
        1,
        (8, 0, -(2**31), 0),
        "record 0: -2147483648 headers cannot fit the 0 bytes left in the record",
    ),
    (
        "header key past the record",
        record(0, header_count=1, headers=varint(50) + b"xy"),
        1,
        (9, 0, 50, 2),
        "record 0: header key length 50 does not fit the 2 bytes left in the record",
    ),
    (
        "null header key",
        record(0, header_count=1, headers=varint(-1) + varint(0)),
        1,
        (9, 0, -1, 1),
        "record 0: header key length -1 does not fit the 1 bytes left in the record",
    ),
    (
        "header value past the record",
        record(0, header_count=1, headers=varint(1) + b"h" + varint(9)),
        1,
        (10, 0, 9, 0),
        "record 0: header value length 9 does not fit the 0 bytes left in the record",
    ),
    (
        "record length past the batch",
        record(0, length=100),
        1,
        (4, 0, 100, 8),
        "record 0: its length 100 does not fit the 8 bytes left in the batch",
    ),
    (
        "record length shorter than its fields",
        record(0, value=b"value", length=4) + b"\x00" * 10,
        1,
        (6, 0, 1, 0),
        "record 0: key length 1 does not fit the 0 bytes left in the record",
    ),
    (
        "record length longer than its fields",
        record(0, length=9) + b"\x00",
        1,
        (11, 0, 8, 9),
        "record 0: its fields take 8 bytes but its length says 9",
    ),
    (
        "empty record",
        varint(0),
        1,
        (2, 0, 0, 0),
        "record 0: a field runs past the end of the record",
    ),
    (
        "varint of 6 bytes",
        b"\xff\xff\xff\xff\x8f\x01",
        1,
        (3, 0, 0, 0),
        "record 0: a varint is longer than Kafka allows (5 bytes, 10 for a varlong)",
    ),
    (
        "varint cut short",
        b"\xff",
        1,
        (2, 0, 0, 0),
        "record 0: a field runs past the end of the record",
    ),
    ("no records", b"", 1, (1, 0, 1, 0), "the batch declares 1 records but holds only 0"),
]


@pytest.mark.parametrize("scanner", SCANNERS)
@pytest.mark.parametrize(
    ("section", "count", "expected", "text"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_each_rule(
    scanner, section: bytes, count: int, expected: tuple[int, int, int, int], text: str | None
) -> None:
    assert scanner(section, count) == expected
    assert scanner(memoryview(section), count) == expected
    if text is None:
        assert records.scan(section, count) == records.RecordsSummary(*expected[1:])
    else:
        assert records.message(expected) == text
        with pytest.raises(InvalidRecord, match=f"^{re.escape(text)}$"):
            records.scan(section, count)


def test_varlong_timestamp_deltas_use_all_64_bits() -> None:
    section = record(0, timestamp_delta=-(2**63)) + record(1, timestamp_delta=2**63 - 1)
    for scanner in [p.values[0] for p in SCANNERS]:
        assert scanner(section, 2) == (0, -(2**63), 2**63 - 1, 0)


@pytest.mark.skipif(records.scan_c is None, reason="the C extension is not built")
def test_mutated_sections_give_the_same_result_in_c_and_python() -> None:
    rng = random.Random(7)
    base = b"".join(
        record(i, b"value-%d" % i, key=b"k" if i % 3 else None, headers=header(b"h", b"x" * i))
        for i in range(8)
    )
    for _ in range(3000):
        data = bytearray(base)
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.2:
            data = data[: rng.randrange(len(data) + 1)]
        count = rng.choice([8, 8, 8, 7, 9, 1, 0])
        assert records.scan_c(bytes(data), count) == records.scan_py(bytes(data), count)


@pytest.mark.skipif(records.scan_c is None, reason="the C extension is not built")
@given(data=st.binary(max_size=300), count=st.integers(0, 40))
def test_random_bytes_give_the_same_result_in_c_and_python(data: bytes, count: int) -> None:
    assert records.scan_c is not None
    assert records.scan_c(data, count) == records.scan_py(data, count)

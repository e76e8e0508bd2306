"""Column types on PostgreSQL both ways: source rows to JSON (the documented table) and
the sink's JSON back into the same column types, equal to the original row."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import example, given
from hypothesis import strategies as st

from backbone import DataError
from tests.connectors.test_sql_support import execute, read_n, rows, sink, sink_record, source

pytestmark = pytest.mark.timeout(60)

COLUMNS = (
    "id INTEGER PRIMARY KEY, d DATE, t TIME, i INTERVAL, u UUID, j JSONB, js JSON, "
    "a INTEGER[], ta TEXT[], tz TIMESTAMPTZ, ts TIMESTAMP, n NUMERIC(12, 3), f DOUBLE PRECISION, "
    "r REAL, b BYTEA, flag BOOLEAN, big BIGINT, txt TEXT"
)

ROWS = [
    "(1, '2024-05-01', '12:34:56.5', '1 day 02:03:04.5', "
    '\'6f1b8e8e-3c1a-4f0e-9a57-2b8c5c1f3e11\', \'{"x": [1, 2.5, null], "y": {"z": true}}\', '
    "'[1, \"two\"]', '{1,2,3}', '{\"a\",\"b c\"}', '2024-05-01 12:00:00+03', "
    "'2024-05-01 12:00:00.25', 12345.670, 0.1, 1.5, '\\x00ff10', true, 9007199254740993, 'text')",
    "(2, NULL, NULL, NULL, NULL, NULL, NULL, '{}', NULL, NULL, NULL, NULL, 'NaN', "
    "'Infinity', NULL, NULL, NULL, NULL)",
    "(3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'NaN', '-Infinity', "
    "NULL, NULL, false, NULL, '')",
]

EXPECTED: list[dict[str, Any]] = [
    {
        "id": 1,
        "d": "2024-05-01",
        "t": "12:34:56.500000",
        "i": 93784.5,
        "u": "6f1b8e8e-3c1a-4f0e-9a57-2b8c5c1f3e11",
        "j": {"x": [1, 2.5, None], "y": {"z": True}},
        "js": [1, "two"],
        "a": [1, 2, 3],
        "ta": ["a", "b c"],
        "tz": "2024-05-01T09:00:00+00:00",
        "ts": "2024-05-01T12:00:00.250000+00:00",
        "n": "12345.670",
        "f": 0.1,
        "r": 1.5,
        "b": "AP8Q",
        "flag": True,
        "big": 9007199254740993,
        "txt": "text",
    },
    {
        "id": 2,
        **dict.fromkeys(["d", "t", "i", "u", "js", "ta", "tz", "ts", "n", "b", "flag"], None),
        "j": None,
        "a": [],
        "f": "nan",
        "r": "inf",
        "big": None,
        "txt": None,
    },
    {
        "id": 3,
        **dict.fromkeys(
            ["d", "t", "i", "u", "j", "js", "a", "ta", "tz", "ts", "r", "b", "big"], None
        ),
        "n": "NaN",
        "f": "-inf",
        "flag": False,
        "txt": "",
    },
]


@pytest.mark.postgres
async def test_postgres_types_to_json_and_back(postgres_url: str, tmp_path: Path) -> None:
    execute(
        postgres_url,
        f"CREATE TABLE kinds ({COLUMNS})",
        f"CREATE TABLE copy ({COLUMNS})",
        f"INSERT INTO kinds VALUES {', '.join(ROWS)}",
    )
    src = source(postgres_url, tmp_path, table="kinds", mode="bulk")
    await src.open(None)
    try:
        got = await read_n(src, 3)
    finally:
        await src.close()
    assert [r.value["after"] for r in got] == EXPECTED
    out = sink(postgres_url, tmp_path, table="copy", insert_mode="upsert")
    await out.open()
    try:
        await out.write([sink_record(r.value, r.key, offset=i) for i, r in enumerate(got)])
    finally:
        await out.close()
    # the rows' text forms (every column as PostgreSQL prints it) are equal
    original = rows(postgres_url, "SELECT id, kinds::text FROM kinds ORDER BY id")
    copied = rows(postgres_url, "SELECT id, copy::text FROM copy ORDER BY id")
    assert copied == original


async def test_sqlite_infinities_and_bad_floats_through_the_sink(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kinds.db'}"
    execute(url, "CREATE TABLE kinds (id INTEGER PRIMARY KEY, f REAL, n NUMERIC)")
    execute(url, "INSERT INTO kinds VALUES (1, 9e999, 1.5), (2, -9e999, NULL)")
    src = source(url, tmp_path, table="kinds", mode="bulk")
    await src.open(None)
    try:
        got = await read_n(src, 2)
    finally:
        await src.close()
    assert [r.value["after"] for r in got] == [
        {"id": 1, "f": "inf", "n": "1.5000000000"},  # SQLAlchemy reads SQLite NUMERIC at scale 10
        {"id": 2, "f": "-inf", "n": None},
    ]
    execute(url, "DELETE FROM kinds")
    out = sink(url, tmp_path, table="kinds")
    await out.open()
    try:
        await out.write([sink_record(r.value, r.key, offset=i) for i, r in enumerate(got)])
        with pytest.raises(DataError) as caught:
            await out.write([sink_record({"id": 3, "f": "lots"}, offset=2)])
    finally:
        await out.close()
    assert rows(url, "SELECT id, f, typeof(f) FROM kinds ORDER BY id") == [
        (1, float("inf"), "real"),
        (2, float("-inf"), "real"),
    ]
    assert str(caught.value) == (
        "record shop.orders/0@2: field 'f': 'lots' is not a valid float for column 'f' "
        "(could not convert string to float: 'lots')"
    )


def test_columns_convert_as_each_value_would() -> None:
    """A batch converted column by column equals ``to_json`` of every value, whatever the
    mix of types in a column (SQLite columns hold any type)."""
    import datetime as dt
    import decimal
    from zoneinfo import ZoneInfo

    from backbone.connectors.sql._values import column_json, to_json

    zone = ZoneInfo("Europe/Paris")
    naive = dt.datetime(2024, 7, 1, 12, 30, 0, 250000)
    columns: list[list[Any]] = [
        [1, "a", None, True, 2**70],
        [decimal.Decimal("1.50"), None, decimal.Decimal("-0")],
        [naive, None, naive.replace(tzinfo=dt.UTC), dt.datetime(2024, 1, 1)],
        [1.5, None, float("nan"), float("inf")],
        [1.5, 2.25, None],
        [decimal.Decimal("3"), 4, "x"],
        [b"\x00\xff", dt.date(2024, 5, 1), dt.time(1, 2), dt.timedelta(seconds=90)],
        [],
    ]
    for values in columns:
        for where in (zone, ZoneInfo("UTC")):
            assert list(column_json(values, where)) == [to_json(v, where) for v in values]


def _timestamp_text(value: str, zoned: bool) -> str:
    """What a COPY gets for a timestamp: the checked value in ISO 8601, in UTC."""
    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC)
        if not zoned:
            parsed = parsed.replace(tzinfo=None)
    return parsed.isoformat()


@given(
    moment=st.datetimes(
        min_value=dt.datetime(2, 1, 1),
        max_value=dt.datetime(9998, 12, 31),
        timezones=st.sampled_from(
            [
                None,
                dt.UTC,
                dt.timezone(dt.timedelta(hours=2)),
                dt.timezone(-dt.timedelta(hours=5.5)),
            ]
        ),
    ),
    timespec=st.sampled_from(["auto", "seconds", "milliseconds", "microseconds"]),
    sep=st.sampled_from(["T", " "]),
    zulu=st.booleans(),
)
@example(dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC), "auto", "T", False)
@example(dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC), "microseconds", "T", False)  # .000000
@example(dt.datetime(2024, 5, 1, 12, 0, 0, 5, tzinfo=dt.UTC), "auto", "T", True)
@example(dt.datetime(2024, 5, 1, 12), "auto", "T", False)
def test_timestamps_for_a_copy_are_the_iso_text_of_the_checked_value(
    moment: dt.datetime, timespec: str, sep: str, zulu: bool
) -> None:
    """The text a timestamp column's converter gives a COPY is ``isoformat()`` of the value
    converted to UTC, whatever form it came in (a common one is taken as it is)."""
    from backbone.connectors.sql._bulk import converters

    text = moment.isoformat(sep=sep, timespec=timespec)
    if zulu:
        text = text.replace("+00:00", "Z")
    for value in (text, "20240501T120000Z", "2024-W18-3T12:00:00+00:00", "2024-05-01T12:00"):
        for zoned in (True, False):
            table = sa.Table("t", sa.MetaData(), sa.Column("at", sa.DateTime(timezone=zoned)))
            convert = converters(table, text=True)["at"]
            assert convert is not None
            assert convert(value) == _timestamp_text(value, zoned), (value, zoned)

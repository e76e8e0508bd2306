"""Durations and sizes parse from the strings users write."""

from __future__ import annotations

import re

import pytest
from pydantic import BaseModel, ValidationError

from backbone import ByteSize, Duration, parse_duration, parse_size
from backbone.types import format_duration, format_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("200ms", 0.2),
        ("5s", 5.0),
        ("1.5m", 90.0),
        ("2h", 7200.0),
        ("7d", 604800.0),
        ("1w", 604800.0),
        ("3", 3.0),
        (" 10 s ", 10.0),
        (0, 0.0),
        (2.5, 2.5),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512", 512),
        ("10MB", 10_000_000),
        ("64MiB", 64 * 2**20),
        ("1.5KiB", 1536),
        ("2GiB", 2 * 2**30),
        (7, 7),
    ],
)
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("5 mins", 'expected a duration like "5s", "200ms" or "7d" (got \'5 mins\')'),
        (True, 'expected a duration like "5s", "200ms" or "7d" (got True)'),
        (-1, "a duration cannot be negative (got -1)"),
    ],
)
def test_bad_durations(value: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(value)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("64 MegaBytes", 'expected a size like "64MiB" or "10MB" (got \'64 MegaBytes\')'),
        (-5, "a size cannot be negative (got -5)"),
        (1.5, 'expected a size like "64MiB" or "10MB" (got 1.5)'),
    ],
)
def test_bad_sizes(value: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_size(value)
    assert str(info.value) == message


def test_in_models() -> None:
    class Model(BaseModel):
        wait: Duration
        limit: ByteSize

    assert Model(wait="250ms", limit="1KiB").model_dump() == {"wait": 0.25, "limit": 1024}
    with pytest.raises(ValidationError) as info:
        Model(wait="soon", limit="1KiB")
    assert info.value.errors()[0]["msg"] == (
        'Value error, expected a duration like "5s", "200ms" or "7d" (got \'soon\')'
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.2, "200ms"),
        (1.0, "1s"),
        (5.0, "5s"),
        (90, "90s"),
        (3600, "1h"),
        (604800, "7d"),
        (1.25, "1250ms"),
        (0.0005, "0.0005s"),
    ],
)
def test_format_duration_round_trips(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0B"),
        (512, "512B"),
        (1024, "1KiB"),
        (2**20, "1MiB"),
        (64 * 2**20, "64MiB"),
        (10**7, "10MB"),
        (1536, "1536B"),
    ],
)
def test_format_size_round_trips(size: int, text: str) -> None:
    assert format_size(size) == text
    assert parse_size(text) == size


def test_json_schema_accepts_unit_strings() -> None:
    class Model(BaseModel):
        wait: Duration = 1.0
        limit: ByteSize | None = None

    schema = Model.model_json_schema()
    wait = schema["properties"]["wait"]
    assert wait["anyOf"][0] == {"type": "number", "minimum": 0}
    assert wait["anyOf"][1]["type"] == "string"
    assert wait["default"] == 1.0
    pattern = re.compile(wait["anyOf"][1]["pattern"])
    assert [bool(pattern.match(t)) for t in ("5s", "200ms", "7d", "1.5m", "3", "5 mins")] == [
        True,
        True,
        True,
        True,
        True,
        False,
    ]
    size_schema, null = schema["properties"]["limit"]["anyOf"]
    assert null == {"type": "null"}
    limit = size_schema["anyOf"]
    assert limit[0] == {"type": "integer", "minimum": 0}
    size = re.compile(limit[1]["pattern"])
    assert [bool(size.match(t)) for t in ("64MiB", "10MB", "512", "64 MegaBytes")] == [
        True,
        True,
        True,
        False,
    ]

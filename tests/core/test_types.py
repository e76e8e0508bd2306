"""Durations and sizes parse from the strings users write."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from backbone import ByteSize, Duration, parse_duration, parse_size


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

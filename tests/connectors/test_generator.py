"""The generator source: conformance suite, rate, count, keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from backbone import testing
from backbone.connectors.generator import GeneratorOptions, GeneratorSource


def make(tmp_path: Path, **options: object):
    def factory() -> GeneratorSource:
        return GeneratorSource(GeneratorOptions(**options), testing.context(tmp_path))

    return factory


async def test_conformance(tmp_path: Path) -> None:
    await testing.check_source(
        make(tmp_path, rate=2000, keys=3),
        minimum=20,
        same=lambda r: (r.key, r.position, r.value["seq"], r.value["message"]),
    )


async def test_idle_read_returns(tmp_path: Path) -> None:
    await testing.check_source_idle_read(make(tmp_path, rate=1000, count=5), drain=5)


async def test_events_count_and_keys(tmp_path: Path) -> None:
    source = make(tmp_path, rate=5000, count=12, keys=5, fields={"site": "a"})()
    await source.open(7)
    records = await testing.read_at_least(source, 5)
    assert [r.position for r in records] == [8, 9, 10, 11, 12]
    assert [r.key for r in records] == ["key-3", "key-4", "key-0", "key-1", "key-2"]
    assert records[0].value["seq"] == 8 and records[0].value["site"] == "a"
    assert records[0].value["message"] == "event 8"
    assert records[0].event_type == "backbone.generator.event"
    assert await source.read() == []  # count reached
    await source.close()


async def test_bad_position_is_rejected(tmp_path: Path) -> None:
    source = make(tmp_path)()
    with pytest.raises(ValueError) as info:
        await source.open("seven")
    assert str(info.value) == "generator position must be an integer (got 'seven')"

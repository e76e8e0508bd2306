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


async def test_vary_draws_per_event_values_the_same_in_every_run(tmp_path: Path) -> None:
    vary = {
        "amount": {"min": 1, "max": 500},
        "price": {"min": 0.5, "max": 2.5, "decimals": 1},
        "country": {"choice": ["DE", "AT", "FR"], "weights": [5, 2, 1]},
    }
    source = make(tmp_path, rate=10_000, count=400, vary=vary, fields={"card": "x"})()
    await source.open(None)
    records = await testing.read_at_least(source, 400)
    await source.close()
    values = [r.value for r in records]
    assert {v["country"] for v in values} == {"DE", "AT", "FR"}
    de = sum(v["country"] == "DE" for v in values)
    assert 150 < de < 350  # weight 5 of 8: about 250 of 400
    assert all(1 <= v["amount"] <= 500 and isinstance(v["amount"], int) for v in values)
    assert len({v["amount"] for v in values}) > 100
    assert all(0.5 <= v["price"] <= 2.5 and round(v["price"], 1) == v["price"] for v in values)
    assert all(v["card"] == "x" for v in values)
    again = make(tmp_path, rate=10_000, count=400, vary=vary)()  # a restart after event 200
    await again.open(200)
    resumed = await testing.read_at_least(again, 200)
    await again.close()
    assert [(r.value["amount"], r.value["country"]) for r in resumed] == [
        (v["amount"], v["country"]) for v in values[200:]
    ]


async def test_malformed_events_are_reported_as_bad_input(tmp_path: Path) -> None:
    source = make(tmp_path, rate=10_000, count=1000, malformed=0.1)()
    await source.open(None)
    records = await testing.read_at_least(source, 1000)
    await source.close()
    bad = [r for r in records if r.error is not None]
    assert 50 < len(bad) < 150
    assert all(isinstance(r.value, str) and r.position == int(r.error.split()[2]) for r in bad)
    assert bad[0].error.endswith("is not valid JSON (malformed: 0.1)")
    assert all(r.error is None and r.value["seq"] == r.position for r in records if r not in bad)


def test_vary_options_are_checked() -> None:
    with pytest.raises(ValueError, match=r"min \(5\) is larger than max \(1\)"):
        GeneratorOptions(vary={"a": {"min": 5, "max": 1}})
    with pytest.raises(ValueError, match=r"weights has 1 value\(s\) for 2 choice\(s\)"):
        GeneratorOptions(vary={"a": {"choice": [1, 2], "weights": [1]}})

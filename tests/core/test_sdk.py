"""The connector SDK: Offload, StateDir, registration checks, and the contract rules
the runtime enforces (a source breaking one stops FAILED with a ContractError)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

import backbone
from backbone import sdk
from backbone.positions import POSITIONS_TOPIC, history
from backbone.registry import Registry
from backbone.runner import ConnectorState
from backbone.testing import FAST_RUNTIME, broker_yaml, consume, context, running, wait_until

pytestmark = pytest.mark.timeout(60)


def test_the_sdk_is_re_exported_by_backbone() -> None:
    for name in sdk.__all__:
        assert getattr(backbone, name) is getattr(sdk, name), name
    assert {
        "type",
        "topic",
        "topics",
        "dead_letter_topic",
        "retry",
        "start",
    } == sdk.RESERVED_OPTIONS


def test_reserved_names_are_the_runtime_fields_of_every_entry() -> None:
    from backbone.config import SinkSettings, SourceSettings

    assert set(SourceSettings.model_fields) | set(SinkSettings.model_fields) == set(
        sdk.RESERVED_OPTIONS
    )


# ----------------------------------------------------------------------------- Offload


async def test_offload_serializes_concurrent_calls() -> None:
    call = sdk.Offload()
    log: list[str] = []
    release = threading.Event()

    def slow(name: str) -> str:
        log.append(f"start {name}")
        release.wait(10)
        log.append(f"end {name}")
        return name

    first = asyncio.create_task(call(slow, "a"))
    second = asyncio.create_task(call(slow, name="b"))
    await wait_until(lambda: log == ["start a"], what="the first call to start")
    assert call.busy
    release.set()
    assert await asyncio.gather(first, second) == ["a", "b"]
    assert log == ["start a", "end a", "start b", "end b"]
    assert not call.busy


async def test_offload_keeps_a_cancelled_call_and_waits_for_it() -> None:
    call = sdk.Offload()
    release = threading.Event()
    log: list[str] = []

    def slow() -> None:
        log.append("slow started")
        release.wait(10)
        log.append("slow ended")
        raise RuntimeError("nobody wants this outcome")

    task = asyncio.create_task(call(slow))
    await wait_until(lambda: log == ["slow started"], what="the call to start")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert call.busy  # the thread still runs: the Offload did not forget it
    following = asyncio.create_task(call(lambda: log.append("next")))
    settled = asyncio.create_task(call.settle())
    # a window in which an Offload that forgot the cancelled call would run "next"
    # before "slow ended" (the order asserted below); nothing waits on it
    await asyncio.sleep(0.05)
    release.set()
    await asyncio.wait_for(asyncio.gather(following, settled), 10)
    assert log == ["slow started", "slow ended", "next"]
    assert not call.busy


async def test_offload_passes_errors_of_the_call_to_its_caller() -> None:
    call = sdk.Offload()

    def broken() -> None:
        raise ValueError("bad input 7")

    with pytest.raises(ValueError, match=r"^bad input 7$"):
        await call(broken)
    assert await call(time.monotonic) > 0  # usable afterwards


# ---------------------------------------------------------------------------- StateDir


def test_state_dir_round_trip_delete_and_names(tmp_path: Path) -> None:
    ctx = context(tmp_path, "orders")
    state = ctx.state
    assert state.folder == tmp_path / "state" / "orders"
    assert state.read("cursor.json") is None
    assert state.read("cursor.json", default={"n": 0}) == {"n": 0}
    assert state.names() == []
    state.write("cursor.json", {"n": 1, "name": "é"})
    state.write("snapshot-1.json", [1, 2])
    state.write("snapshot-2.json", [3])
    assert state.read("cursor.json") == {"n": 1, "name": "é"}
    assert state.names("snapshot-*.json") == ["snapshot-1.json", "snapshot-2.json"]
    state.delete("snapshot-1.json")
    state.delete("snapshot-1.json")  # twice: nothing happens
    assert state.names() == ["cursor.json", "snapshot-2.json"]
    assert sorted(p.name for p in state.folder.iterdir()) == ["cursor.json", "snapshot-2.json"]


def test_state_dir_refuses_paths_and_reports_a_damaged_file(tmp_path: Path) -> None:
    state = sdk.StateDir(tmp_path)
    for name in ("../x", "a/b", "", "x.tmp"):
        with pytest.raises(ValueError, match="must be a plain file name"):
            state.write(name, 1)
    (tmp_path / "cursor.json").write_text("{not json")
    with pytest.raises(sdk.FatalError, match=r"^state file .*cursor\.json is not valid JSON"):
        state.read("cursor.json")


# ------------------------------------------------------------------------ registration


class _Options(sdk.ConnectorOptions):
    path: str = "x"
    """A path."""


class _HalfSink(sdk.Sink[_Options]):
    async def write(self, records: Sequence[sdk.SinkRecord]) -> None:
        return None


def test_a_kind_missing_open_or_close_is_refused_at_registration() -> None:
    kind = sdk.ConnectorKind("half", "Half a sink.", sink=_HalfSink, sink_options=_Options)
    with pytest.raises(TypeError) as info:
        Registry([kind])
    assert str(info.value) == (
        "connector kind 'half': sink class _HalfSink does not implement close, open "
        "(every Sink defines open, close and write)"
    )


# -------------------------------------------------------------------- rules at runtime

BREAKS = "tests.core.plugins:BREAKS"


@pytest.mark.parametrize(
    ("breaks", "message"),
    [
        (
            "shared",
            "ContractError: source bad broke the connector contract: a record has the same "
            "position as the record before it (7) and no identity, so its ce_id would collide "
            "with another change's; set SourceRecord.identity",
        ),
        (
            "none",
            "ContractError: source bad broke the connector contract: a record carries "
            "position=None and no identity, so its ce_id would collide",
        ),
        (
            "data_error",
            "ContractError: source bad broke the connector contract: read() raised DataError "
            "(line 3 is not JSON); a source reports bad input as a record, "
            "SourceRecord(value=<the raw input>, error=<why>, position=<the position after "
            "it>), which goes to the dead-letter topic",
        ),
    ],
)
async def test_a_source_breaking_a_rule_stops_failed_with_a_contract_error(
    tmp_path: Path, breaks: str, message: str
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        broker_yaml("embedded", data_dir=tmp_path / "broker")
        + FAST_RUNTIME
        + f'sources:\n  bad: {{type: "{BREAKS}", topic: t, breaks: {breaks}}}\n'
    )
    async with running(config) as runner:
        status = runner.status["bad"]
        await wait_until(lambda: status.state is ConnectorState.FAILED, what="FAILED")
    assert status.error is not None and status.error.startswith(message), status.error


async def test_a_change_of_two_records_saves_only_the_position_after_it(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        broker_yaml("embedded", data_dir=tmp_path / "broker")
        + FAST_RUNTIME
        + f'sources:\n  good: {{type: "{BREAKS}", topic: t, breaks: nothing}}\n'
    )
    async with running(config) as runner:
        assert runner.bootstrap is not None
        records = await consume(runner.bootstrap, "t", count=2)
        saved = await consume(runner.bootstrap, POSITIONS_TOPIC, count=2)  # claim, save
        assert runner.status["good"].state is ConnectorState.RUNNING
    assert [(r.key, r.value) for r in records] == [(b"a", b'{"n":1}'), (b"a", None)]
    ids = [dict(r.headers)["ce_id"] for r in records]
    assert len(set(ids)) == 2  # from the identities: one position, two ids
    assert {r.key for r in saved} == {b"good"}
    assert history(saved, "good") == [5]

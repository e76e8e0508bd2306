"""One broker per data directory: a second one is refused, tools find the first one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from backbone.broker import Broker, BrokerConfig, BrokerError
from backbone.broker.lock import LockHolder, holder
from tests.servers import free_port, wait_for_port


async def test_a_second_broker_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    assert holder(tmp_path) is None
    async with Broker(BrokerConfig(data_dir=tmp_path, port=0)) as first:
        found = holder(tmp_path)
        assert found == LockHolder(pid=os.getpid(), bootstrap=first.bootstrap)
        with pytest.raises(BrokerError) as refused:
            async with Broker(BrokerConfig(data_dir=tmp_path, port=0)):
                pass
        assert str(refused.value) == (
            f"the data directory {tmp_path} is in use by another broker (pid {os.getpid()}, "
            f"serving {first.bootstrap}); stop it first, or give this broker another data "
            "directory"
        )
    assert holder(tmp_path) is None
    async with Broker(BrokerConfig(data_dir=tmp_path, port=0)):  # free again
        assert holder(tmp_path) is not None


def test_a_killed_broker_leaves_the_data_dir_free(tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, "-m", "backbone.broker", "--listen", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(
        [*command, "--data-dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, timeout=30, proc=proc)
        assert holder(tmp_path) == LockHolder(pid=proc.pid, bootstrap=f"127.0.0.1:{port}")
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        assert holder(tmp_path) is None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)

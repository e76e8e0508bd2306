"""Helpers of the operator tests: run ``backbone`` commands, a broker process, configs."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.servers import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
BACKBONE = Path(sys.executable).parent / "backbone"


def cli(
    *args: str,
    input: str | None = None,
    cwd: Path = ROOT,
    timeout: float = 90,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``backbone ARGS`` and wait for it (output captured as text)."""
    return subprocess.run(
        [str(BACKBONE), *args],
        input=input,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


def ok(*args: str, input: str | None = None, **options: object) -> str:
    """``backbone ARGS``, which must exit 0; its standard output."""
    result = cli(*args, input=input, **options)  # type: ignore[arg-type]
    assert result.returncode == 0, f"backbone {' '.join(args)}: {result.stderr}"
    return result.stdout


@dataclass
class BrokerProcess:
    """``backbone broker`` on a data directory, and a config file naming that directory."""

    proc: subprocess.Popen[bytes]
    port: int
    config: Path
    data_dir: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


def write_config(folder: Path, body: str = "", *, listen: str = "127.0.0.1:0") -> Path:
    """``folder/gateway.yaml`` with the embedded broker on ``folder/data`` and ``body``."""
    config = folder / "gateway.yaml"
    config.write_text(f'broker: {{embedded: {{listen: "{listen}", data_dir: data}}}}\n' + body)
    return config


@contextlib.contextmanager
def broker_process(folder: Path, body: str = "") -> Iterator[BrokerProcess]:
    """A broker process serving ``folder/data`` (as a running gateway's broker would)."""
    config = write_config(folder, body)
    port = free_port()
    data_dir = folder / "data"
    with open(folder / "broker.log", "ab") as log:
        proc = subprocess.Popen(
            [str(BACKBONE), "broker", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data_dir)],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        wait_for_port(port, timeout=30, proc=proc)
        yield BrokerProcess(proc, port, config, data_dir)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)

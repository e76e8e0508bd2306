"""Sampling profiles of Backbone's broker process while a workload runs (py-spy).

Who calls what: ``benchmarks.broker`` (option ``--profile DIR``) wraps each
Backbone workload in :func:`record`, which runs ``py-spy record`` against the
broker's pid (non-blocking sampling, only samples of the thread holding the
GIL, so the figures show where the broker's Python CPU time goes; fsync and
epoll waits release the GIL and do not appear) and writes the collapsed
stacks to ``DIR/backbone-<workload>.txt``; :func:`hot_spots` turns such a file
into the top functions by own (self) samples and by inclusive samples, which
the harness prints under the table. py-spy must be installed
(``pip install py-spy``) and allowed to read the broker's memory (root, or
ptrace permission).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def py_spy() -> str | None:
    """Path of the py-spy executable next to this Python, or on PATH."""
    local = Path(sys.executable).parent / "py-spy"
    if local.exists():
        return str(local)
    return shutil.which("py-spy")


@contextlib.contextmanager
def record(pid: int, output: Path, *, rate: int = 200) -> Iterator[None]:
    """Sample ``pid`` with py-spy into ``output`` (collapsed stacks) while the block runs."""
    exe = py_spy()
    if exe is None:
        raise RuntimeError("py-spy is not installed: run `.venv/bin/pip install py-spy`")
    output.parent.mkdir(parents=True, exist_ok=True)
    argv = [exe, "record", "--pid", str(pid), "--rate", str(rate), "--nonblocking", "--gil"]
    argv += ["--format", "raw", "--output", str(output)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()


def _frame_name(frame: str) -> str:
    # py-spy raw frames look like "append (backbone/broker/log/partition.py:120)".
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path, _, _line = where.rpartition(":")
    for marker in ("/broker/", "/core/", "/connectors/", "/site-packages/", "/lib/python3"):
        if marker in path:
            path = path[path.index(marker) + 1 :]
            break
    return f"{name} ({path})" if path else name


def _ours(name: str) -> bool:
    """A frame of Backbone's own code, other than the entry points every sample passes."""
    if not ("(broker/" in name or "(core/" in name or "(connectors/" in name):
        return False
    return not name.startswith(("serve ", "main ", "<module> "))


def hot_spots(path: Path, *, seconds: float, rate: int = 200, top: int = 15) -> dict[str, Any]:
    """Top functions of a py-spy collapsed-stack file by self and inclusive share of samples.

    ``gil_busy_pct`` = samples / (rate x seconds): how much of the wall time
    the broker held the GIL (roughly, how busy its one Python core was).
    """
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";")]
        frames = [f for f in frames if not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            if _ours(name):
                inclusive[name] += count

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        # Frames present in (nearly) every sample - runpy, asyncio.run, serve - say nothing.
        ranked = [(name, n) for name, n in counter.most_common() if n < 0.98 * total]
        return [(name, 100.0 * n / total) for name, n in ranked[:top]]

    return {
        "samples": total,
        "seconds": round(seconds, 2),
        "gil_busy_pct": round(100.0 * total / max(rate * seconds, 1.0), 1),
        "self": share(own),
        "inclusive": share(inclusive),
    }


def render_hot_spots(label: str, spots: dict[str, Any], top: int = 10) -> str:
    """A short text block: the top self and inclusive entries of one profile."""
    lines = [
        f"{label}: {spots['samples']} samples holding the GIL in {spots['seconds']} s "
        f"(GIL busy ~{spots['gil_busy_pct']}% of the time)"
    ]
    lines.append("  self %   function")
    lines += [f"  {pct:6.1f}   {name}" for name, pct in spots["self"][:top]]
    lines.append("  total %  Backbone function (inclusive)")
    lines += [f"  {pct:6.1f}   {name}" for name, pct in spots["inclusive"][:top]]
    return "\n".join(lines)

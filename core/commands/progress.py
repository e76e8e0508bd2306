"""Progress of long commands (replay, redrive): a rich bar on a terminal, plain lines otherwise.

On a terminal (standard error is a TTY) :class:`Progress` shows a bar with
records done / total, rate and time left; elsewhere (a log file, CI) it prints one
line every ``interval`` seconds and a last one when done::

    replay warehouse: 40000/100000 records (40%), 8123 records/s, about 7s left
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress

__all__ = ["Progress"]


class Progress:
    """Reports ``completed`` out of ``total`` records (see the module docstring)."""

    def __init__(
        self,
        description: str,
        total: int,
        *,
        stream: TextIO | None = None,
        interval: float = 5.0,
        terminal: bool | None = None,
    ) -> None:
        self.description = description
        self.total = total
        self.stream = stream or sys.stderr
        self.interval = interval
        self.terminal = self.stream.isatty() if terminal is None else terminal
        self.completed = 0
        self._started = time.monotonic()
        self._last_line = self._started
        self._bar: RichProgress | None = None
        self._task: object = None

    def __enter__(self) -> Progress:
        if self.terminal:
            self._bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("records"),
                TaskProgressColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
                console=Console(file=self.stream),
                transient=False,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(self.description, total=self.total, rate="")
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.__exit__(kind, exc, tb)
        elif kind is None:
            self._line(done=True)

    def rate(self) -> float:
        """Records per second since the start."""
        elapsed = time.monotonic() - self._started
        return self.completed / elapsed if elapsed > 0 else 0.0

    def update(self, completed: int) -> None:
        """Set how many records are done; prints a line if ``interval`` passed (not a TTY)."""
        self.completed = completed
        if self._bar is not None:
            self._bar.update(
                self._task,  # type: ignore[arg-type]
                completed=min(completed, self.total),
                rate=f"{self.rate():.0f} records/s",
            )
            return
        now = time.monotonic()
        if now - self._last_line >= self.interval:
            self._last_line = now
            self._line(done=False)

    def _line(self, *, done: bool) -> None:
        percent = 100 * self.completed // self.total if self.total else 100
        text = (
            f"{self.description}: {self.completed}/{self.total} records ({percent}%), "
            f"{self.rate():.0f} records/s"
        )
        rate = self.rate()
        if done:
            text += f", done in {time.monotonic() - self._started:.1f}s"
        elif rate > 0 and self.total > self.completed:
            text += f", about {(self.total - self.completed) / rate:.0f}s left"
        print(text, file=self.stream, flush=True)

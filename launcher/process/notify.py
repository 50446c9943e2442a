"""systemd's readiness protocol (sd_notify), spoken directly: newline-separated KEY=VALUE
datagrams to the AF_UNIX socket named by ``$NOTIFY_SOCKET`` ("@..." names the abstract namespace).

Without ``NOTIFY_SOCKET`` every call is a no-op, so ``modelserve run`` behaves the same in a
terminal. The watchdog interval comes from ``$WATCHDOG_USEC`` when ``$WATCHDOG_PID`` is unset or
names this process; systemd recommends a ping every half interval, and starts watching only
once the service reported READY=1.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

# Never passed on to engine processes: they must not talk to systemd on our behalf.
SYSTEMD_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


class Notifier:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.address = env.get("NOTIFY_SOCKET") or None
        usec = env.get("WATCHDOG_USEC")
        pid = env.get("WATCHDOG_PID")
        self.watchdog_usec: int | None = None
        if usec and usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_usec = int(usec)
        self.sent: list[str] = []  # what was sent, for status and tests

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings (half the timeout), or None when no watchdog."""
        return self.watchdog_usec / 2e6 if self.watchdog_usec else None

    def send(self, **fields: str) -> bool:
        """Send one datagram; False when not under systemd or the socket is gone (never raises:
        a notification must not take the server down)."""
        if not self.address:
            return False
        message = "\n".join(f"{key}={value}" for key, value in fields.items())
        self.sent.append(message)
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(target)
                sock.sendall(message.encode())
        except OSError:
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send(READY="1", STATUS=status)

    def status(self, text: str) -> bool:
        return self.send(STATUS=text)

    def stopping(self, status: str = "stopping") -> bool:
        return self.send(STOPPING="1", STATUS=status)

    def watchdog(self) -> bool:
        return self.send(WATCHDOG="1")


def child_environment(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in SYSTEMD_ENV}

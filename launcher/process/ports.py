"""Port checks before anything starts, and free ports for internal processes."""

from __future__ import annotations

import contextlib
import errno
import socket
from dataclasses import dataclass

import psutil

from launcher.core.errors import ConfigError, PortInUse


@dataclass(frozen=True)
class Holder:
    pid: int | None
    command: str | None


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def is_free(host: str, port: int) -> bool:
    bind_host = "" if host in ("0.0.0.0", "*") else host
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR like the servers themselves (werkzeug, uvicorn): a port in TIME_WAIT after
        # a server stopped is free for them, while a listening socket still makes bind() fail.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((bind_host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def holder(port: int) -> Holder | None:
    """Who listens on ``port`` (pid and command line when the OS lets us see them)."""
    try:
        conns = psutil.net_connections(kind="inet")
    except (psutil.AccessDenied, OSError):
        return None
    for conn in conns:
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
            if conn.pid is None:
                return Holder(None, None)
            try:
                cmd = " ".join(psutil.Process(conn.pid).cmdline()) or psutil.Process(conn.pid).name()
            except psutil.Error:
                cmd = None
            return Holder(conn.pid, cmd)
    return None


def ensure_free(host: str, port: int, *, owner_hint: str | None = None) -> None:
    """Raise PortInUse naming the holder and the fix when ``host:port`` cannot be bound."""
    try:
        if is_free(host, port):
            return
    except PermissionError:
        raise PortInUse(
            f"port {port} is privileged and this user cannot bind it", "pick a port above 1023, e.g. -p 8000"
        ) from None
    except OSError as exc:
        if exc.errno == errno.EADDRNOTAVAIL:
            raise ConfigError(
                f"--host {host} is not an address of this machine", "use 127.0.0.1, 0.0.0.0 or one of its addresses"
            ) from None
        raise
    who = holder(port)
    if who is not None and who.pid is not None:
        cmd = (who.command or "?")[:120]
        what = f"port {port} is held by pid {who.pid} ({cmd})"
    else:
        what = f"port {port} on {host} is already in use"
    fix = f"pick another port, e.g. -p {suggest(host, port)}"
    if owner_hint:
        fix += f", or run `modelserve down {owner_hint}`"
    raise PortInUse(what, fix)


def suggest(host: str, port: int) -> int:
    for candidate in range(port + 1, min(port + 100, 65535)):
        with contextlib.suppress(OSError):
            if is_free(host, candidate):
                return candidate
    return free_port(host)


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS considers free right now (the usual bind-to-0 trick)."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port

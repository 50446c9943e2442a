"""Readiness: the server answers the way a client will use it, within a deadline.

"Alive" is never enough: each probe makes the request a real client makes (list the served
model, a 1-token completion, a tiny POST /llm/). ``wait_until_ready`` polls the probes, checks
every child on every turn (so a crash is reported within one interval, with its exit code and
the tail of its log), and on timeout says how long it waited and the last error it saw.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from backends.base import ReadinessProbe
from launcher.errors import ReadinessTimeout, StartupCancelled, StartupFailed


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    detail: str


class Watched(Protocol):
    """A started child: ``poll()`` returns its exit code once it has exited, else None."""

    role: str
    log_path: Path

    def poll(self) -> int | None: ...


def _request(
    url: str, *, body: dict[str, Any] | None = None, api_key: str | None = None, timeout: float = 5.0
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if body is not None else "GET")
    if body is not None:
        req.add_header("Content-Type", "application/json")
    if api_key:
        req.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        status = exc.code
    try:
        payload = json.loads(raw) if raw else None
    except ValueError:
        payload = raw[:200].decode(errors="replace")
    return status, payload


def check(probe: ReadinessProbe, timeout: float = 5.0) -> ProbeResult:
    """Run one probe once. Never raises for network trouble: that is a failed probe."""
    try:
        return _check(probe, timeout)
    except (OSError, urllib.error.URLError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        return ProbeResult(False, f"waiting until {probe.describe()}: {reason}")


def _check(probe: ReadinessProbe, timeout: float) -> ProbeResult:
    base = probe.url.rstrip("/")
    if probe.kind == "http-ok":
        status, _ = _request(base + (probe.path or "/"), api_key=probe.api_key, timeout=timeout)
        return ProbeResult(status == 200, f"GET {probe.path or '/'} -> HTTP {status}")

    if probe.kind == "openai-models":
        status, payload = _request(base + "/v1/models", api_key=probe.api_key, timeout=timeout)
        if status != 200:
            return ProbeResult(False, f"GET /v1/models -> HTTP {status}: {_short(payload)}")
        ids = [m.get("id") for m in (payload or {}).get("data", []) if isinstance(m, dict)]
        if probe.model not in ids:
            return ProbeResult(False, f"/v1/models lists {ids}, not {probe.model!r} yet")
        return ProbeResult(True, f"/v1/models lists {probe.model!r}")

    if probe.kind == "openai-chat":
        body = {"model": probe.model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1,
                "temperature": 0}  # fmt: skip
        status, payload = _request(base + "/v1/chat/completions", body=body, api_key=probe.api_key, timeout=timeout)
        if status != 200:
            return ProbeResult(False, f"POST /v1/chat/completions -> HTTP {status}: {_short(payload)}")
        try:
            payload["choices"][0]["message"]
        except (KeyError, IndexError, TypeError):
            return ProbeResult(False, f"/v1/chat/completions answered without choices[0].message: {_short(payload)}")
        return ProbeResult(True, "a 1-token chat completion answered")

    if probe.kind == "post-llm":
        body = {"messages": [{"role": "user", "content": "Hi"}], "max_new_tokens": 1}
        status, payload = _request(base + "/llm/", body=body, api_key=probe.api_key, timeout=timeout)
        if status != 200:
            return ProbeResult(False, f"POST /llm/ -> HTTP {status}: {_short(payload)}")
        try:
            content = payload["data"]["response"]["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            return ProbeResult(False, f"POST /llm/ answered without the AgentScope envelope: {_short(payload)}")
        if not isinstance(content, str):
            return ProbeResult(False, "POST /llm/: message.content is not a string")
        return ProbeResult(True, "POST /llm/ returned the envelope")

    if probe.kind == "ollama-version":
        status, payload = _request(base + "/api/version", timeout=timeout)
        ok = status == 200 and isinstance(payload, dict) and "version" in payload
        return ProbeResult(ok, f"GET /api/version -> HTTP {status}: {_short(payload)}")

    if probe.kind == "ollama-model":
        status, payload = _request(base + "/api/tags", timeout=timeout)
        if status != 200:
            return ProbeResult(False, f"GET /api/tags -> HTTP {status}")
        names = [m.get("name") for m in (payload or {}).get("models", []) if isinstance(m, dict)]
        wanted = probe.model or ""
        found = wanted in names or (":" not in wanted and f"{wanted}:latest" in names)
        return ProbeResult(found, f"/api/tags lists {names}")

    if probe.kind in ("fastchat-controller", "fastchat-model"):
        # The controller's own API: POST /list_models -> {"models": [names of registered workers]}.
        status, payload = _request(base + "/list_models", body={}, timeout=timeout)
        if status != 200 or not isinstance(payload, dict) or "models" not in payload:
            return ProbeResult(False, f"controller POST /list_models -> HTTP {status}: {_short(payload)}")
        if probe.kind == "fastchat-controller":
            return ProbeResult(True, "the controller answers")
        names = payload["models"]
        if probe.model not in names:
            return ProbeResult(False, f"the controller lists {names}, no worker has registered {probe.model!r} yet")
        return ProbeResult(True, f"a worker serves {probe.model!r}")

    return ProbeResult(False, f"unknown probe kind {probe.kind!r}")


def _short(payload: Any, limit: int = 200) -> str:
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return text if len(text) <= limit else text[:limit] + "..."


def check_all(probes: Sequence[ReadinessProbe], timeout: float = 5.0) -> ProbeResult:
    """All probes in order; the first failure is the result."""
    last = ProbeResult(True, "no probes")
    for probe in probes:
        last = check(probe, timeout)
        if not last.ok:
            return last
    return last


def tail(path: Path, lines: int = 20, max_bytes: int = 64 * 1024) -> str:
    """The last ``lines`` lines of a log file (reads at most ``max_bytes`` from its end)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except OSError:
        return ""
    text = data.decode(errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def wait_until_ready(
    probes: Sequence[ReadinessProbe],
    watched: Sequence[Watched],
    *,
    timeout: float,
    interval: float = 0.2,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    on_progress: Callable[[float, str], None] | None = None,
    progress_every: float = 10.0,
    checker: Callable[[ReadinessProbe, float], ProbeResult] = check,
    cancelled: Callable[[], bool] | None = None,
) -> float:
    """Poll until every probe passes; return the seconds it took.

    Raises StartupFailed as soon as a watched child has exited, ReadinessTimeout at the deadline,
    StartupCancelled when ``cancelled()`` turns true (a signal arrived while waiting).
    """
    start = clock()
    deadline = start + timeout
    last = ProbeResult(False, "no probe has run yet")
    next_report = start + progress_every
    pending = list(probes)
    while True:
        if cancelled is not None and cancelled():
            raise StartupCancelled(f"stopped while waiting for readiness ({clock() - start:.1f} s)")
        for child in watched:
            code = child.poll()
            if code is not None:
                raise StartupFailed(
                    f"the {child.role} process exited with code {code} while starting "
                    f"(after {clock() - start:.1f} s); full log: {child.log_path}",
                    "read the log above; `modelserve logs NAME` shows more once a deployment runs",
                    returncode=code,
                    log_tail=tail(child.log_path),
                )
        now = clock()
        if now >= deadline:
            logs = [c.log_path for c in watched]
            raise ReadinessTimeout(
                f"not ready after {timeout:.0f} s: {last.detail}",
                f"raise --timeout (the engine may still be loading), or read the log: {', '.join(map(str, logs))}",
                log_tail=tail(watched[-1].log_path, 10) if watched else "",
            )
        # Each request gets what is left of the deadline, at most 30 s (a 1-token completion on
        # a loaded CPU model takes well under a second; the rest is margin for a busy machine).
        per_request = max(0.5, min(30.0, deadline - now))
        while pending:
            last = checker(pending[0], per_request)
            if not last.ok:
                break
            pending.pop(0)
        if not pending:
            return clock() - start
        if on_progress is not None and clock() >= next_report:
            on_progress(clock() - start, last.detail)
            next_report += progress_every
        sleep(interval)

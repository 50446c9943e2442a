"""What the page's buttons do, through the same doors a user has: `modelserve down` and
`modelserve restart` for a deployment or fleet, the gateway's ``POST /fleet/load|unload/NAME``
for a member, `modelserve config` for an agent config (every key in it replaced by a
placeholder: the page never shows one)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from launcher.agents.format_names import FORMATS
from launcher.core.errors import ClientConfigError, DeploymentNotFound, ManagedElsewhere
from launcher.process.groups import inherited_environment
from launcher.store import records

KEY_PLACEHOLDER = "YOUR_API_KEY"
STOP_TIMEOUT = 300.0  # seconds `modelserve down` may take (a big engine's bounded stop, then SIGKILL)
START_TIMEOUT = 900.0  # seconds a restart or a member's load may take (a model loading)
CONFIG_TIMEOUT = 60.0


@dataclass(frozen=True)
class Outcome:
    ok: bool
    message: str
    status: int = 200
    note: str = ""

    def response(self) -> web.Response:
        return web.json_response({"ok": self.ok, "message": self.message, "note": self.note}, status=self.status)


def _env() -> dict[str, str]:
    # As the gateway's member commands get it: no MODELSERVE_* but where state and cache live. The
    # dashboard's marker would make what a restart starts one of its own processes (stopped with
    # it), and its key is its own business.
    env = inherited_environment(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


async def run_cli(*args: str, timeout: float) -> tuple[int, str, str]:
    """``modelserve ARGS`` as a child: (exit code, stdout, stderr). Past ``timeout`` it is stopped
    (SIGTERM: `up` and `restart` stop what they started) and reported as exit 124."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "launcher.cli", *args, env=_env(),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except (TimeoutError, asyncio.CancelledError):
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        return 124, "", f"`modelserve {' '.join(args)}` did not finish in {timeout:.0f} s"
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


def _said(err: str) -> str:
    """The error lines of a command's stderr (progress lines dropped)."""
    lines = [line for line in err.splitlines() if line.startswith(("error:", "  fix:", "fix:", "warning:"))]
    return "\n".join(lines) or "\n".join(err.strip().splitlines()[-4:])


async def stop(name: str) -> Outcome:
    code, out, err = await run_cli("down", name, timeout=STOP_TIMEOUT)
    return Outcome(True, out.strip()) if code == 0 else Outcome(False, _said(err), 502)


async def restart(name: str) -> Outcome:
    code, _, err = await run_cli("restart", name, timeout=START_TIMEOUT)
    if code == 0:
        return Outcome(True, f"{name} restarted")
    return Outcome(False, _said(err), 409 if code == ManagedElsewhere.exit_code else 502)


async def member(session: aiohttp.ClientSession, fleet: records.DeploymentRecord, member_name: str, verb: str) -> Outcome:
    """Ask the fleet's gateway to load or unload one member."""
    headers = {"Authorization": f"Bearer {fleet.api_key}"} if fleet.api_key else {}
    url = f"{fleet.base_url}/fleet/{verb}/{member_name}"
    try:
        async with session.post(url, headers=headers, timeout=aiohttp.ClientTimeout(total=START_TIMEOUT)) as r:
            body = await r.json(content_type=None)
            status = r.status
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return Outcome(False, f"the gateway of {fleet.name} did not answer: {type(exc).__name__}: {exc}", 502)
    if status == 200 and isinstance(body, dict):
        return Outcome(True, f"{member_name} is {body.get('state')}")
    message = body.get("error", {}).get("message") if isinstance(body, dict) else None
    return Outcome(False, message or f"the gateway answered HTTP {status}", status if 400 <= status < 500 else 502)


async def config_text(name: str, fmt: str, member_id: str | None, secrets: set[str]) -> Outcome:
    if fmt not in FORMATS:
        return Outcome(False, f"unknown format {fmt!r}; one of: {', '.join(FORMATS)}", 400)
    args = ["config", name, "-f", fmt, *(["--member", member_id] if member_id else [])]
    code, out, err = await run_cli(*args, timeout=CONFIG_TIMEOUT)
    if code != 0:
        return Outcome(False, _said(err), 400 if code in (ClientConfigError.exit_code, DeploymentNotFound.exit_code) else 502)
    text, hidden = out, False
    for secret in secrets:
        if secret and secret in text:
            text, hidden = text.replace(secret, KEY_PLACEHOLDER), True
    note = (f"The key is left out ({KEY_PLACEHOLDER}); in a terminal, `modelserve config {name} -f {fmt}` prints "
            "it." if hidden else "")  # fmt: skip
    return Outcome(True, text, note=note)

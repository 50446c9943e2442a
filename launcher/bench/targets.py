"""What `modelserve bench NAME|URL` measures: a deployment's OpenAI route (its record gives the
URL, the served model name and the API key; a fleet member is reached through its gateway) or a
server URL given directly (the key from MODELSERVE_API_KEY, the model from --model or
/v1/models). Each target is asked GET /v1/models first, so a dead or locked one fails before any
load runs, with a message naming the fix."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from launcher.core.errors import ConfigError, TargetUnreachable
from launcher.store import records

API_KEY_ENV = "MODELSERVE_API_KEY"


@dataclass(frozen=True)
class BenchTarget:
    label: str  # the NAME, or host:port
    openai_url: str  # ends in /v1 (or the server's own prefix)
    model: str
    api_key: str | None = field(default=None, repr=False)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


def resolve(ref: str, *, model: str | None, timeout: float = 10.0) -> BenchTarget:
    """A deployment NAME or a URL, checked to answer GET /v1/models."""
    if "://" in ref:
        target = BenchTarget(_label(ref), _openai_url(ref), model or "", os.environ.get(API_KEY_ENV) or None)
    else:
        target = _from_record(ref, model)
    listed = _models(target, timeout)
    if target.model:
        return target
    if len(listed) != 1:
        raise ConfigError(f"{ref} serves {len(listed)} models ({', '.join(listed) or 'none listed'})",
                          "name the one to measure with --model")  # fmt: skip
    return BenchTarget(target.label, target.openai_url, listed[0], target.api_key)


def _label(url: str) -> str:
    return urlsplit(url).netloc or url


def _openai_url(url: str) -> str:
    parts = urlsplit(url.rstrip("/"))
    path = parts.path if parts.path not in ("", "/") else "/v1"
    return f"{parts.scheme}://{parts.netloc}{path}"


def _from_record(name: str, model: str | None) -> BenchTarget:
    record = records.load(name)
    if record.fleet:  # a member: through its gateway, under the model id the gateway routes by
        gateway = records.load(record.fleet)
        ids = gateway.served_model_name.split(", ")
        member_id = ids[gateway.members.index(name)] if name in gateway.members else record.served_model_name
        return BenchTarget(name, gateway.endpoints.get("openai", f"{gateway.base_url}/v1"), model or member_id,
                           gateway.api_key)  # fmt: skip
    url = record.endpoints.get("openai")
    if url is None:
        raise ConfigError(f"{name} serves no OpenAI route (its APIs: {', '.join(record.endpoints) or 'none'})",
                          "bench a deployment that serves /v1 (see `modelserve backends`)")  # fmt: skip
    # A fleet's gateway serves several models: --model picks one, or the only one is used.
    own = "" if record.members else record.served_model_name
    return BenchTarget(name, url.rstrip("/"), model or own, record.api_key)


def _models(target: BenchTarget, timeout: float) -> list[str]:
    url = f"{target.openai_url}/models"
    req = urllib.request.Request(url, headers=target.headers())
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            data = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        fix = (f"give the deployment's key in {API_KEY_ENV}" if exc.code in (401, 403)
               else "check the URL: bench needs the server's OpenAI route (.../v1)")  # fmt: skip
        raise TargetUnreachable(f"{target.label} refused GET {url}: HTTP {exc.code}", fix) from None
    except (OSError, ValueError) as exc:
        raise TargetUnreachable(f"{target.label} does not answer GET {url}: {getattr(exc, 'reason', exc)}",
                                "start it (modelserve up / modelserve status) or check the URL") from None  # fmt: skip
    try:
        return [str(m["id"]) for m in data["data"]]
    except (KeyError, TypeError):
        raise TargetUnreachable(f"{target.label}: GET {url} is not an OpenAI model list",
                                "check the URL: bench needs the server's OpenAI route (.../v1)") from None  # fmt: skip

"""Before a model ID that is in no local cache is handed to an engine to download: can the hub
be reached at all? Engines retry for a long time (round one waited 49 s for Transformers' retries
on a machine with no hub access); this asks once, bounded, and fails with the fixes.
"""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request

from launcher.core.errors import ModelNotFound

DEADLINE = 6.0  # seconds for the whole check, DNS included (urllib's timeout does not bound DNS)
OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def endpoint(hub: str) -> str:
    if hub == "modelscope":
        domain = os.environ.get("MODELSCOPE_DOMAIN", "www.modelscope.cn")
        return domain if "://" in domain else f"https://{domain}"
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def _api_url(model_id: str, hub: str) -> str:
    if hub == "modelscope":
        return f"{endpoint(hub)}/api/v1/models/{model_id}"
    return f"{endpoint(hub)}/api/models/{model_id}"


def _fixes(model_id: str, hub: str) -> str:
    download = f"`modelscope download {model_id}`" if hub == "modelscope" else f"`huggingface-cli download {model_id}`"
    mirror = "MODELSCOPE_DOMAIN" if hub == "modelscope" else "HF_ENDPOINT (a mirror, e.g. https://hf-mirror.com)"
    return (f"download it where the hub is reachable ({download}) and copy the cache here, set {mirror}, "
            "or pass a local folder with -m")  # fmt: skip


def check_downloadable(model_id: str, hub: str = "hf", *, deadline: float = DEADLINE) -> None:
    """Raise ModelNotFound, within ``deadline`` seconds, unless the hub answers for ``model_id``."""
    offline = [v for v in OFFLINE_VARS if os.environ.get(v, "").lower() in ("1", "true", "yes")]
    if offline and hub == "hf":
        raise ModelNotFound(f"model {model_id!r} is in no local cache, and {offline[0]}=1 forbids downloading it",
                            _fixes(model_id, hub))  # fmt: skip
    outcome: list[BaseException | int] = []

    def ask() -> None:
        request = urllib.request.Request(_api_url(model_id, hub), method="GET")
        if hub == "hf" and os.environ.get("HF_TOKEN"):
            request.add_header("Authorization", f"Bearer {os.environ['HF_TOKEN']}")
        try:
            with urllib.request.urlopen(request, timeout=deadline) as response:
                outcome.append(response.status)
        except urllib.error.HTTPError as exc:
            outcome.append(exc.code)
        except (OSError, ValueError) as exc:
            outcome.append(exc)

    worker = threading.Thread(target=ask, daemon=True)  # daemon: a hung DNS lookup must not hold exit
    worker.start()
    worker.join(deadline)
    where = endpoint(hub)
    if not outcome:
        raise ModelNotFound(f"model {model_id!r} is in no local cache, and {where} did not answer within "
                            f"{deadline:g} s", _fixes(model_id, hub))  # fmt: skip
    result = outcome[0]
    if isinstance(result, BaseException):
        reason = getattr(result, "reason", result)
        raise ModelNotFound(f"model {model_id!r} is in no local cache, and {where} cannot be reached ({reason})",
                            _fixes(model_id, hub))  # fmt: skip
    if result == 404:
        raise ModelNotFound(f"{where} has no model {model_id!r}", "check the ID (org/name, as on the hub page)")
    if result in (401, 403) and not os.environ.get("HF_TOKEN"):
        raise ModelNotFound(f"model {model_id!r} on {where} is gated or private (HTTP {result})",
                            "accept its license on the hub page, then `huggingface-cli login` or set HF_TOKEN")  # fmt: skip

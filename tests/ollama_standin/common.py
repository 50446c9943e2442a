"""What every part of the stand-in shares: its version, Ollama-style log lines, Go-style JSON,
timestamps, response ids, and reading OLLAMA_HOST.

Built from Ollama envconfig Host(): OLLAMA_HOST is [scheme://]host[:port][/path]; no scheme means
http on port 11434 (http:// alone 80, https:// 443); an empty host means 127.0.0.1, ":port" binds
all.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from datetime import datetime, timezone
from typing import Any

VERSION = "0.14.0"  # the first release with the Anthropic-compatible /v1/messages

CHAT_COUNTER = iter(range(1, 1 << 62))
COUNTER_LOCK = threading.Lock()


def log(msg: str, level: str = "INFO", source: str = "routes.go") -> None:
    now = datetime.now().astimezone().isoformat(timespec="milliseconds")
    print(f"time={now} level={level} source={source} msg={json.dumps(msg)}", file=sys.stderr, flush=True)


def compact(obj: Any) -> bytes:
    """JSON the way Go's encoder writes it: no spaces."""
    return json.dumps(obj, separators=(",", ":")).encode()


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def next_id() -> int:
    with COUNTER_LOCK:
        return next(CHAT_COUNTER)


def parse_host(value: str) -> tuple[str, str, int]:
    """(scheme, host, port) the way envconfig.Host() reads OLLAMA_HOST."""
    value = value.strip()
    default_port = 11434
    scheme, sep, hostport = value.partition("://")
    if not sep:
        scheme, hostport = "http", value
    elif scheme == "http":
        default_port = 80
    elif scheme == "https":
        default_port = 443
    hostport = hostport.split("/", 1)[0]
    host, port = "127.0.0.1", default_port
    match = re.fullmatch(r"\[(?P<h6>[^\]]*)\]:(?P<p6>[^:]*)|(?P<h>[^:\[\]]*):(?P<p>[^:]*)", hostport)
    if match:
        host = match.group("h6") if match.group("h6") is not None else match.group("h") or ""
        raw_port = match.group("p6") if match.group("p6") is not None else match.group("p")
        try:
            port = int(raw_port)
            if not 0 <= port <= 65535:
                raise ValueError
        except ValueError:
            log(f"invalid port, using default port={raw_port} default={default_port}", "WARN", "envconfig/config.go")
            port = default_port
    elif hostport:
        host = hostport.strip("[]")
    return scheme, host, port

"""The `ollama` command line, as far as modelserve uses it: `serve`, `--version`, `--help`.

Built from Ollama cmd: `--version` prints "ollama version is X", or without a server "Warning:
could not connect to a running Ollama instance" and "Warning: client version is X".
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request

from tests.ollama_standin.common import VERSION, parse_host
from tests.ollama_standin.server import serve

USAGE = ("Usage:\n  ollama [command]\n\nAvailable Commands (modelserve test stand-in):\n"
         "  serve       Start ollama\n\nFlags:\n  -v, --version   Show version information")  # fmt: skip


def version() -> int:
    """`ollama --version`: asks the server on $OLLAMA_HOST for its version."""
    scheme, host, port = parse_host(os.environ.get("OLLAMA_HOST", ""))
    shown = f"[{host or '127.0.0.1'}]" if ":" in host else (host or "127.0.0.1")
    if shown in ("0.0.0.0", "[::]"):
        shown = "127.0.0.1"
    try:
        with urllib.request.urlopen(f"{scheme}://{shown}:{port}/api/version", timeout=5) as resp:
            server_version = json.loads(resp.read()).get("version")
    except (OSError, ValueError):
        server_version = None
    if server_version is None:
        print("Warning: could not connect to a running Ollama instance")
        print(f"Warning: client version is {VERSION}")
    else:
        print(f"ollama version is {server_version}")
        if server_version != VERSION:
            print(f"Warning: client version is {VERSION}")
    return 0


def main(argv: list[str]) -> int:
    """Run the command in ``argv`` (without the program name); returns the exit status."""
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    if argv[0] in ("-v", "--version"):
        return version()
    if argv[0] in ("serve", "start"):
        return serve()
    print(f"Error: the modelserve stand-in implements only `serve` and `--version`, not {argv[0]!r}", file=sys.stderr)
    return 2

"""The ``modelserve`` command line: click commands that translate flags into one launcher call
and render its result. The only part of modelserve that prints.

``root`` holds the group and error conversion; ``deploy`` (up, down, status, logs, health),
``machine`` (backends, devices, env), ``ops`` (run, systemd) and ``config`` add their commands
to it when the group first needs them; ``output`` renders results as text or JSON.
"""

from __future__ import annotations

from launcher.cli.root import ModelserveGroup, main

__all__ = ["ModelserveGroup", "main"]

if __name__ == "__main__":
    main()

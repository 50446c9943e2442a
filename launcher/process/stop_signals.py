"""SIGTERM and SIGHUP stop a starting `up` the way Ctrl-C does.

Python turns SIGINT into KeyboardInterrupt wherever the main thread is, and `up` (one deployment
or a fleet) answers it by stopping what it started and removing its record. SIGTERM (from
`timeout`, CI runners, service managers, a gateway stopping a member's `up`) and SIGHUP (a closed
terminal) used to end `up` outright, leaving its server running and recorded as "starting". Inside
:func:`raising` they raise :class:`~launcher.core.errors.Terminated` the same way.

The handler raises rather than only recording the signal (what `modelserve run`'s supervisor
does) because `up` has no single loop that could look at a flag: model conversion, pulls,
readiness and a fleet's preloads each wait in their own way. Only the first signal raises; later
ones are ignored, so the stop it set off runs to the end.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from launcher.core.errors import Terminated

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


@contextmanager
def raising(signums: tuple[signal.Signals, ...] = STOP_SIGNALS) -> Iterator[list[int]]:
    """While inside, the first of ``signums`` raises Terminated; yields the signals received."""
    received: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        if len(received) == 1:
            raise Terminated(signum)

    previous = {s: signal.signal(s, handler) for s in signums}
    try:
        yield received
    finally:
        for s, old in previous.items():
            signal.signal(s, old)

"""`modelserve logs -f`: the tail first, then new lines as they are written, across a rotation."""

from __future__ import annotations

from pathlib import Path

from launcher.process import logs


def test_follow_prints_tail_then_new_lines_and_survives_rotation(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("old 1\nold 2\nold 3\n")
    got: list[str] = []
    turns = iter(range(100))

    def step(_: float) -> None:
        # Each idle turn of the follower is a moment for the "server" to write something.
        n = next(turns)
        if n == 0:
            with log.open("a") as fh:
                fh.write("new 1\n")
        elif n == 1:
            log.rename(tmp_path / "server.log.1")  # `up` rotates the log on a restart
            log.write_text("after rotation\n")

    for chunk in logs.follow(log, lines=2, stop=lambda: any("after rotation" in c for c in got), sleep=step):
        got.append(chunk)
    text = "".join(got)
    assert text.startswith("old 2\nold 3\n")
    assert "old 1" not in text
    assert text.index("new 1") < text.index("after rotation")

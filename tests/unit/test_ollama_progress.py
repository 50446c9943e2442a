"""Ollama's NDJSON pull/create status objects -> the few lines `up` prints."""

from __future__ import annotations

from typing import Any

from backends.ollama.backend import PullProgress, human_bytes, progress_lines

MODEL = "sha256:c5396e06af294bd101b30dce59131a76d2b773e76950acc870eda801d3ab0515"
TEMPLATE = "sha256:66b9ea09bd5b7099cbb4fc820f31b575c0366fa439b08245566692c6784e281e"


def layer(digest: str, total: int, completed: list[int | None]) -> list[dict[str, Any]]:
    """What a pull sends for one layer: no "completed" before the first bytes, then updates."""
    out: list[dict[str, Any]] = []
    for done in completed:
        event: dict[str, Any] = {"status": f"pulling {digest[7:19]}", "digest": digest, "total": total}
        if done is not None:
            event["completed"] = done
        out.append(event)
    return out


def test_a_pull_renders_each_status_once_and_layers_at_coarse_steps() -> None:
    big = 397_807_936
    # A real pull sends hundreds of updates per layer; 1 % steps here.
    events = [{"status": "pulling manifest"}, *layer(MODEL, big, [None, *(big * i // 100 for i in range(101))]),
              *layer(TEMPLATE, 1_482, [None, 1_482]),
              {"status": "verifying sha256 digest"}, {"status": "writing manifest"},
              {"status": "removing any unused layers"}, {"status": "success"}]  # fmt: skip
    assert progress_lines(events) == [
        "pulling manifest",
        "pulling c5396e06af29   0% of 397.8 MB",
        "pulling c5396e06af29  25% of 397.8 MB",
        "pulling c5396e06af29  50% of 397.8 MB",
        "pulling c5396e06af29  75% of 397.8 MB",
        "pulling c5396e06af29 100% of 397.8 MB",
        "pulling 66b9ea09bd5b   0% of 1.5 KB",
        "pulling 66b9ea09bd5b 100% of 1.5 KB",
        "verifying sha256 digest",
        "writing manifest",
        "removing any unused layers",
        "success",
    ]


def test_repeats_and_a_layer_seen_again_print_nothing_new() -> None:
    progress = PullProgress()
    assert progress.feed({"status": "pulling manifest"}) == ["pulling manifest"]
    assert progress.feed({"status": "pulling manifest"}) == []
    assert progress.feed(layer(MODEL, 1000, [1000])[0]) == ["pulling c5396e06af29 100% of 1.0 KB"]
    assert progress.feed(layer(MODEL, 1000, [1000])[0]) == []
    # A layer Ollama already has arrives complete at once: one line, not five.
    assert progress.feed(layer(TEMPLATE, 68, [68])[0]) == ["pulling 66b9ea09bd5b 100% of 68 B"]


def test_the_older_downloading_status_and_a_missing_status_still_render() -> None:
    assert progress_lines([{"status": f"downloading {MODEL}", "digest": MODEL, "total": 2000, "completed": 600}]) == [
        f"downloading {MODEL}  25% of 2.0 KB"]
    assert progress_lines([{"digest": MODEL, "total": 2000, "completed": 2000}]) == [
        "pulling c5396e06af29 100% of 2.0 KB"]


def test_create_statuses_render_as_they_come() -> None:
    events = [{"status": "parsing GGUF"}, {"status": f"using existing layer {MODEL}"},
              {"status": "writing manifest"}, {"status": "success"}]  # fmt: skip
    assert progress_lines(events) == ["parsing GGUF", f"using existing layer {MODEL}", "writing manifest", "success"]


def test_sizes_use_decimal_units_like_ollama() -> None:
    assert [human_bytes(n) for n in (59, 7_020, 397_807_936, 3_826_793_677, 0)] == [
        "59 B", "7.0 KB", "397.8 MB", "3.8 GB", "0 B"]

"""The few Ollama HTTP calls `up` makes (tags, pull, blob upload, create, copy), each bounded by
the readiness deadline and failing with Ollama's own reason."""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, NoReturn

from backends.ollama.progress import PullProgress, human_bytes, short_digest
from backends.ollama.source import TAGS_FILE
from launcher.core.errors import ModelNotFound, ModelPrepareError, ReadinessTimeout, StartupFailed

Report = Callable[[str], None]
MIB = 1 << 20


class OllamaAPI:
    """The few Ollama calls `up` makes, each bounded by ``deadline`` (a time.monotonic() value)."""

    def __init__(self, base_url: str, *, deadline: float, what: str = "") -> None:
        self.base = base_url.rstrip("/")
        self.deadline = deadline
        self.what = what  # "pulling qwen2.5:0.5b", for error messages

    def _timeout(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            self.expired()
        return max(0.5, left)

    def expired(self) -> NoReturn:
        raise ReadinessTimeout(
            f"{self.what or 'talking to Ollama'} did not finish before the --timeout deadline ({self.base})",
            "raise --timeout (a multi-GB pull takes minutes), or pull the model beforehand with `ollama pull`",
        )

    def _lost(self, exc: BaseException) -> NoReturn:
        reason = getattr(exc, "reason", None) or exc
        if isinstance(exc, TimeoutError) or isinstance(reason, TimeoutError):
            self.expired()
        raise StartupFailed(
            f"lost the connection to Ollama at {self.base} while {self.what or 'talking to it'}: {reason}",
            "read the server log (`modelserve logs NAME` while it runs, else the path printed above)",
        )

    def _open(self, method: str, path: str, body: Any = None, *, data: Any = None,
              headers: Mapping[str, str] | None = None) -> Any:  # fmt: skip
        payload = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data if data is not None else payload, method=method)
        if payload is not None:
            req.add_header("Content-Type", "application/json")
        for key, value in (headers or {}).items():
            req.add_header(key, value)
        try:
            return urllib.request.urlopen(req, timeout=self._timeout())
        except urllib.error.HTTPError:
            raise
        except (urllib.error.URLError, OSError) as exc:
            self._lost(exc)

    def json(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        try:
            with self._open(method, path, body) as resp:
                raw, status = resp.read(), resp.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
        except (OSError, ValueError) as exc:
            self._lost(exc)
        return status, _decode(raw)

    def tags(self) -> list[str]:
        status, payload = self.json("GET", "/api/tags")
        if status != 200 or not isinstance(payload, dict):
            raise self.error(status, payload)
        return [str(m.get("name")) for m in payload.get("models") or [] if isinstance(m, dict)]

    def stream(self, path: str, body: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """POST ``body`` and yield the NDJSON objects of the answer; an error line or an HTTP error
        raises (ModelPrepareError, or ModelNotFound for a model that does not exist)."""
        try:
            resp = self._open("POST", path, dict(body))
        except urllib.error.HTTPError as exc:
            raise self.error(exc.code, _decode(exc.read())) from None
        with resp:
            while True:
                if time.monotonic() > self.deadline:
                    self.expired()
                try:
                    line = resp.readline()
                except (OSError, ValueError) as exc:
                    self._lost(exc)
                if not line:
                    return
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    raise self.error(200, line[:200].decode(errors="replace")) from None
                if isinstance(event, dict) and event.get("error"):
                    raise self.error(200, event)
                if isinstance(event, dict):
                    yield event

    def error(self, status: int, payload: Any) -> Exception:
        detail = payload.get("error") if isinstance(payload, dict) else payload
        text = f"{self.what or 'Ollama'} failed: {detail}" + (f" (HTTP {status})" if status != 200 else "")
        if "does not exist" in str(detail) or "not found" in str(detail) or status == 404:
            return ModelNotFound(
                text,
                "check the name at https://ollama.com/library (e.g. qwen2.5:0.5b), pass a local GGUF file "
                f"(-m ./model.gguf), or fix the mapping in {TAGS_FILE}",
            )
        return ModelPrepareError(text, f"read Ollama's log; the API at {self.base} said why above")

    def blob_exists(self, digest: str) -> bool:
        try:
            with self._open("HEAD", f"/api/blobs/{digest}"):
                return True
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return False
            raise self.error(exc.code, _decode(exc.read())) from None

    def push_blob(self, path: Path, digest: str, report: Report) -> None:
        size = path.stat().st_size
        with path.open("rb") as fh:
            reader = _ProgressReader(fh, size, lambda pct: report(f"  uploading {path.name} {pct:3d}% of "
                                                                  f"{human_bytes(size)}"), self)  # fmt: skip
            headers = {"Content-Length": str(size), "Content-Type": "application/octet-stream"}
            try:
                with self._open("POST", f"/api/blobs/{digest}", data=reader, headers=headers) as resp:
                    resp.read()
            except urllib.error.HTTPError as exc:
                raise self.error(exc.code, _decode(exc.read())) from None


def _decode(raw: bytes) -> Any:
    """A response body: JSON when it is JSON, else its first 200 characters."""
    try:
        return json.loads(raw) if raw.strip() else None
    except ValueError:
        return raw[:200].decode(errors="replace")


class _ProgressReader:
    """A file wrapper for an upload body that reports 0/25/50/75/100 % and stops the upload at
    the deadline (a slow upload that keeps moving never trips a socket timeout)."""

    def __init__(self, fh: IO[bytes], size: int, report: Callable[[int], None], api: OllamaAPI) -> None:
        self._fh, self._size, self._report, self._api = fh, max(size, 1), report, api
        self._done, self._mark = 0, -1

    def read(self, n: int = -1) -> bytes:
        if time.monotonic() > self._api.deadline:
            self._api.expired()
        chunk = self._fh.read(n)
        self._done += len(chunk)
        mark = min(100, self._done * 100 // self._size) // PullProgress.STEP * PullProgress.STEP
        if mark > self._mark:
            self._mark = mark
            self._report(mark)
        return chunk


def file_digest(path: Path, deadline: float) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(8 * MIB), b""):
            digest.update(block)
            if time.monotonic() > deadline:
                OllamaAPI("", deadline=deadline, what=f"hashing {path}").expired()
    return "sha256:" + digest.hexdigest()


def pull(base: str, tag: str, *, report: Report, deadline: float) -> None:
    """POST /api/pull and show its progress; raises with Ollama's own reason when it fails."""
    api = OllamaAPI(base, deadline=deadline, what=f"pulling {tag}")
    report(f"  pulling {tag} into Ollama at {base}")
    progress = PullProgress()
    last: Mapping[str, Any] = {}
    for event in api.stream("/api/pull", {"model": tag, "stream": True}):
        for line in progress.feed(event):
            report("    " + line)
        last = event
    if last.get("status") != "success":
        raise api.error(200, f"the pull ended without 'success' (last status: {last.get('status')!r})")


def create_from_gguf(base: str, gguf: Path, name: str, *, report: Report, deadline: float) -> None:
    """Upload ``gguf`` as a blob (unless Ollama has it) and create the model ``name`` from it."""
    api = OllamaAPI(base, deadline=deadline, what=f"creating {name} from {gguf}")
    report(f"  hashing {gguf.name} ({human_bytes(gguf.stat().st_size)})")
    digest = file_digest(gguf, deadline)
    if api.blob_exists(digest):
        report(f"  Ollama already has {gguf.name} ({short_digest(digest)})")
    else:
        api.push_blob(gguf, digest, report)
    progress = PullProgress()
    last: Mapping[str, Any] = {}
    for event in api.stream("/api/create", {"model": name, "files": {gguf.name: digest}, "stream": True}):
        for line in progress.feed(event):
            report("    " + line)
        last = event
    if last.get("status") != "success":
        raise api.error(200, f"the create ended without 'success' (last status: {last.get('status')!r})")

"""Ollama: ``ollama serve`` bound with ``OLLAMA_HOST``, or an Ollama that already answers there.

After the server answers, ``after_start`` makes the model present: a tag missing from /api/tags is
pulled, a local GGUF file is uploaded and created. Clients get Ollama's native API (AgentScope's
``ollama_chat``) and its OpenAI-compatible ``/v1``.

Facts this module relies on, from Ollama's own docs (docs/api.md, docs/api/errors.mdx,
docs/api/openai-compatibility.mdx, docs/gpu.mdx) and envconfig's Host():
- ``OLLAMA_HOST`` is ``[scheme://]host[:port]``; `ollama serve` binds there (default 127.0.0.1:11434).
- GET /api/version -> {"version"}; GET /api/tags -> {"models": [{"name": "llama3.2:latest", ...}]}.
  Names are ``[namespace/]model[:tag]``; a missing tag means ``latest``.
- POST /api/pull {"model", "stream"} streams NDJSON: {"status": "pulling manifest"}, then per layer
  {"status": "pulling <short digest>", "digest", "total", "completed"} ("completed" is absent until
  bytes arrive), then "verifying sha256 digest", "writing manifest", "success".
- Errors are {"error": "..."}: as the body of an HTTP error, or as a line of a stream that already
  started (the status code is then 200). An unknown tag: "pull model manifest: file does not exist".
- A model from a GGUF file (the create API since early 2025): HEAD /api/blobs/sha256:<hex> (200 or
  404), POST /api/blobs/sha256:<hex> with the file (201; 400 when the digest does not match), then
  POST /api/create {"model", "files": {"<file name>": "sha256:<hex>"}}, which streams statuses
  ending in "success". The older {"name", "modelfile"} request is refused by current servers
  ("neither 'from' or 'files' was specified"), so it is not used.
- POST /api/copy {"source", "destination"} gives a model a second name.
- /v1/chat/completions and /v1/models are OpenAI-shaped; the API key clients send is ignored.
- CUDA_VISIBLE_DEVICES selects GPUs; an invalid id ("-1") makes Ollama use the CPU only.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar, NoReturn

from backends.base import (
    ApiKind,
    Availability,
    Backend,
    ClientEndpoint,
    LaunchPlan,
    PlanContext,
    ProcessSpec,
    ReadinessProbe,
)

if TYPE_CHECKING:
    from launcher.devices import DevicePlan
    from launcher.models import ResolvedModel
    from launcher.spec import Deployment

Report = Callable[[str], None]

DEFAULT_BINARY = "ollama"
TAGS_FILE = "ollama-tags.yaml"
INSTALL_HINT = (
    "install Ollama (https://ollama.com/download; on Linux: curl -fsSL https://ollama.com/install.sh | sh), "
    "or set `ollama_bin: /path/to/ollama` in the deployment YAML, or start an Ollama on the port yourself "
    "(modelserve then reuses it)"
)
VERSION_RE = re.compile(r"version is (\S+)")
# [host/][namespace/]model[:tag] as Ollama spells names (hf.co/ORG/REPO:QUANT included).
TAG_RE = re.compile(r"^[A-Za-z0-9][\w.-]*(?:/[A-Za-z0-9][\w.-]*){0,2}(?::\w[\w.-]{0,127})?$")
HF_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
GGUF_MAGIC = b"GGUF"
MIB = 1 << 20


# ---- which model: tags, the HF ID table, GGUF files ------------------------------------------


@dataclass(frozen=True)
class TagTable:
    """configs/ollama-tags.yaml: Hugging Face ID -> Ollama tag, and built-in alias -> tag."""

    models: Mapping[str, str] = field(default_factory=dict)
    aliases: Mapping[str, str] = field(default_factory=dict)
    source: str = TAGS_FILE

    def lookup(self, model_id: str) -> str | None:
        wanted = model_id.lower()
        return next((tag for hf_id, tag in self.models.items() if hf_id.lower() == wanted), None)


def load_tag_table(path: Path | None = None) -> TagTable:
    import yaml

    from launcher import resources
    from launcher.errors import ConfigError

    path = path or resources.config_path(TAGS_FILE)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the Ollama tag table {path}: {exc}", f"fix or restore {path}") from None
    tables: dict[str, dict[str, str]] = {}
    for key in ("models", "aliases"):
        section = data.get(key) or {}
        if not isinstance(section, dict) or not all(isinstance(v, str) for v in section.values()):
            raise ConfigError(f"{path}: {key} must map names to Ollama tags (strings)", f"fix {key} in {path}")
        tables[key] = {str(k): v for k, v in section.items()}
    return TagTable(tables["models"], tables["aliases"], str(path))


@dataclass(frozen=True)
class ModelSource:
    """What Ollama should serve: ``tag`` (pulled when missing), or a local ``gguf`` file created
    under the name ``tag``."""

    tag: str
    gguf: Path | None = None
    description: str = ""


def gguf_tag(path: Path) -> str:
    """An Ollama model name for a GGUF file: its stem, lower case, only [a-z0-9._-]."""
    stem = re.sub(r"[^a-z0-9._-]+", "-", path.stem.lower()).strip("-._")
    return stem or "model"


def model_source(reference: str, table: TagTable | None = None) -> ModelSource:
    """Map ``-m`` to what Ollama serves. Raises ModelNotFound with the fix when it cannot."""
    from launcher.errors import ModelNotFound

    path = Path(reference).expanduser()
    looks_like_path = reference.startswith(("/", "./", "../", "~")) or reference.lower().endswith(".gguf")
    if path.is_file():
        with path.open("rb") as fh:
            magic = fh.read(4)
        if magic != GGUF_MAGIC:
            raise ModelNotFound(
                f"{reference} is a file but not a GGUF model (it does not start with 'GGUF')",
                "Ollama imports GGUF files: pass a .gguf file, or an Ollama tag such as qwen2.5:0.5b",
            )
        resolved = path.resolve()
        tag = gguf_tag(resolved)
        return ModelSource(tag, resolved, f"local GGUF {resolved}; created in Ollama as {tag}")
    if path.is_dir():
        raise ModelNotFound(
            f"{reference} is a folder; the ollama backend serves Ollama tags and GGUF files",
            "serve a Transformers folder with -b flask-transformers (or vllm), or pass a .gguf file or an Ollama tag",
        )
    if looks_like_path:
        raise ModelNotFound(
            f"model {reference!r} does not exist (resolved from {os.getcwd()})",
            "check the path of the GGUF file, or pass an Ollama tag such as qwen2.5:0.5b",
        )
    table = table if table is not None else load_tag_table()
    if reference in table.aliases:
        tag = table.aliases[reference]
        return ModelSource(tag, None, f"built-in alias {reference} -> Ollama tag {tag} ({TAGS_FILE})")
    if ":" in reference or reference.startswith(("hf.co/", "huggingface.co/")):
        if not TAG_RE.match(reference) and not reference.startswith(("hf.co/", "huggingface.co/")):
            raise ModelNotFound(f"{reference!r} is not a valid Ollama model name", "use NAME[:TAG], e.g. qwen2.5:0.5b")
        return ModelSource(reference, None, f"Ollama tag {reference}")
    if HF_ID_RE.match(reference):
        mapped = table.lookup(reference)
        if mapped is None:
            raise ModelNotFound(
                f"{reference!r} looks like a Hugging Face ID; Ollama cannot serve those, and {table.source} "
                "maps no Ollama tag to it",
                "pass an Ollama tag instead (e.g. -m qwen2.5:0.5b; see https://ollama.com/library; a user's model "
                "as -m NAMESPACE/MODEL:TAG), or a local GGUF file (-m ./model.gguf), or add the ID to "
                f"{table.source}",
            )
        return ModelSource(mapped, None, f"Hugging Face {reference} -> Ollama tag {mapped} ({TAGS_FILE})")
    if TAG_RE.match(reference):
        return ModelSource(reference, None, f"Ollama tag {reference}")
    raise ModelNotFound(f"{reference!r} is not an Ollama model name, a GGUF file or a known Hugging Face ID",
                        "use an Ollama tag such as qwen2.5:0.5b, or -m ./model.gguf")  # fmt: skip


def canonical(name: str) -> str:
    """Ollama's short form with the tag made explicit: ``llama2`` -> ``llama2:latest``."""
    name = name.strip().lower()
    for prefix in ("registry.ollama.ai/library/", "library/"):
        if name.startswith(prefix):
            name = name[len(prefix):]
    return name if ":" in name.rsplit("/", 1)[-1] else name + ":latest"


def has_model(names: list[str], wanted: str) -> bool:
    return canonical(wanted) in {canonical(n) for n in names}


# ---- progress: Ollama's NDJSON status objects -> a few readable lines ------------------------


def human_bytes(n: int) -> str:
    """Decimal units, the way Ollama prints sizes (3.8 GB, 68 B)."""
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"  # not reached


class PullProgress:
    """Each status once, and per layer only its 0/25/50/75/100 % marks with its size: a real pull
    sends an update every few hundred kilobytes, which is noise in a terminal or a CI log."""

    STEP = 25

    def __init__(self) -> None:
        self._last_status: str | None = None
        self._marks: dict[str, int] = {}

    def feed(self, event: Mapping[str, Any]) -> list[str]:
        status = str(event.get("status") or "")
        digest = event.get("digest")
        total = event.get("total")
        if digest and isinstance(total, int) and total > 0:
            completed = event.get("completed")
            done = completed if isinstance(completed, int) else 0
            mark = min(100, done * 100 // total) // self.STEP * self.STEP
            key = str(digest)
            if mark <= self._marks.get(key, -1):
                return []
            self._marks[key] = mark
            label = status or f"pulling {short_digest(key)}"
            return [f"{label} {mark:3d}% of {human_bytes(total)}"]
        if not status or status == self._last_status:
            return []
        self._last_status = status
        return [status]


def short_digest(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


def progress_lines(events: list[Mapping[str, Any]]) -> list[str]:
    """The lines a whole stream renders to (what `up` prints, without the indentation)."""
    progress = PullProgress()
    return [line for event in events for line in progress.feed(event)]


# ---- the HTTP API ----------------------------------------------------------------------------


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
        from launcher.errors import ReadinessTimeout

        raise ReadinessTimeout(
            f"{self.what or 'talking to Ollama'} did not finish before the --timeout deadline ({self.base})",
            "raise --timeout (a multi-GB pull takes minutes), or pull the model beforehand with `ollama pull`",
        )

    def _lost(self, exc: BaseException) -> NoReturn:
        from launcher.errors import StartupFailed

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
        from launcher.errors import ModelNotFound, ModelPrepareError

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


# ---- the binary ------------------------------------------------------------------------------


def find_binary(configured: str | None) -> str | None:
    """``ollama_bin`` (a path, or a name looked up on PATH), else ``ollama`` on PATH."""
    wanted = configured or DEFAULT_BINARY
    if os.sep in wanted:
        path = Path(wanted).expanduser()
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None
    return shutil.which(wanted)


def binary_version(binary: str) -> str | None:
    """``ollama --version`` says "ollama version is X", or, with no server running, "Warning:
    client version is X"; both name the version after "version is"."""
    if binary in _VERSIONS:
        return _VERSIONS[binary]
    _VERSIONS[binary] = _run_version(binary)
    return _VERSIONS[binary]


_VERSIONS: dict[str, str | None] = {}  # binary -> version: available() and inspect() both ask


def _run_version(binary: str) -> str | None:
    try:
        proc = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = VERSION_RE.search(proc.stdout + "\n" + proc.stderr)
    return match.group(1) if match else None


def host_port(host: str, port: int) -> str:
    """OLLAMA_HOST for a bind address (IPv6 in brackets, as Go's net.JoinHostPort writes it)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def server_env(backend_args: Mapping[str, Any]) -> dict[str, str]:
    """`ollama serve` takes no flags: its settings are OLLAMA_* variables. ``backend_args`` may
    spell them as Ollama does (OLLAMA_KEEP_ALIVE) or short (keep_alive, num_parallel)."""
    out: dict[str, str] = {}
    for key, value in backend_args.items():
        name = key.lstrip("-").replace("-", "_").upper()
        name = name if name.startswith("OLLAMA_") else "OLLAMA_" + name
        if value is None:
            continue
        out[name] = ("1" if value else "0") if isinstance(value, bool) else str(value)
    return out


# ---- the backend -----------------------------------------------------------------------------


class OllamaBackend(Backend):
    name: ClassVar[str] = "ollama"
    api: ClassVar[ApiKind] = "ollama"
    supports_cpu: ClassVar[bool] = True
    supports_gpu: ClassVar[bool] = True
    summary: ClassVar[str] = "Ollama (`ollama serve`, or one already running): /api + OpenAI /v1; pulls the model"

    def available(self, *, python: str | None = None, deployment: Deployment | None = None) -> Availability:
        configured = deployment.ollama_bin if deployment else None
        binary = find_binary(configured)
        if binary is None:
            if configured and os.sep in configured:
                where = f"ollama_bin {configured!r} is not an executable file"
            else:
                where = f"`{configured or DEFAULT_BINARY}` is not on PATH"
            return Availability(False, None, f"{where}: {INSTALL_HINT}")
        version = binary_version(binary)
        return Availability(True, f"ollama {version}" if version else f"{binary} (version unknown)")

    def inspect(self, python: str, deployment: Deployment | None = None) -> dict[str, Any]:
        binary = find_binary(deployment.ollama_bin if deployment else None)
        if binary is None:
            return {}
        return {"binary": binary, "version": binary_version(binary)}

    def resolve_model(self, deployment: Deployment, *, prepare: bool, progress: Report) -> ResolvedModel:
        from launcher.models import ResolvedModel

        src = model_source(deployment.model)
        if src.gguf is not None:
            return ResolvedModel(deployment.model, "local", str(src.gguf), src.tag, src.description)
        return ResolvedModel(deployment.model, "remote", None, src.tag,
                             f"{src.description}; pulled from the Ollama library if missing")  # fmt: skip

    def find_running(self, deployment: Deployment) -> str | None:
        base = deployment.base_url
        try:
            with urllib.request.urlopen(base + "/api/version", timeout=2) as resp:
                payload = json.loads(resp.read())
        except (OSError, ValueError, urllib.error.URLError):
            return None
        if not isinstance(payload, dict) or not isinstance(payload.get("version"), str):
            return None
        owner = _started_by(deployment)
        started = f" (started by modelserve deployment {owner!r}, whose `modelserve down` stops it)" if owner else ""
        return f"Ollama {payload['version']} at {base}{started}"

    def plan(
        self, *, deployment: Deployment, model: ResolvedModel, devices: DevicePlan, ctx: PlanContext
    ) -> LaunchPlan:
        dep = deployment
        served = dep.served_model_name or model.served_name
        base = f"http://{dep.client_host}:{dep.port}"
        notes: list[str] = []
        if dep.api_key:
            notes.append("Ollama does not check API keys: --api-key is written into the client entries but not "
                         "enforced; keep the server on loopback or behind a proxy that checks it")  # fmt: skip
        model_ready = (
            ReadinessProbe("ollama-model", base, served),
            ReadinessProbe("openai-chat", base, served),
        )
        common: dict[str, Any] = {
            "backend": self.name,
            "api": self.api,
            "served_model_name": served,
            "endpoints": {"ollama": base, "openai": f"{base}/v1"},
            "clients": (
                ClientEndpoint("ollama_chat", base, served),
                ClientEndpoint("openai_chat", f"{base}/v1", served, dep.api_key),
            ),
        }
        if ctx.running is not None:
            notes.append(f"reusing {ctx.running}; modelserve will not stop it, and its own settings "
                         "(devices, OLLAMA_* variables, model store) stay as they are")  # fmt: skip
            return LaunchPlan(**common, processes=(), notes=tuple(notes), external=True,
                              engine={"server": ctx.running},
                              final_probes=(ReadinessProbe("ollama-version", base), *model_ready))  # fmt: skip

        binary = str(ctx.engine.get("binary") or dep.ollama_bin or DEFAULT_BINARY)
        env: dict[str, str] = {"OLLAMA_HOST": host_port(dep.host, dep.port)}
        if devices.kind == "cuda" and devices.cuda_visible_devices:
            env["CUDA_VISIBLE_DEVICES"] = devices.cuda_visible_devices
            notes.append(f"{devices.describe()}; Ollama decides how many layers to offload")
        elif dep.device == "cpu":
            env["CUDA_VISIBLE_DEVICES"] = "-1"  # docs/gpu.mdx: an invalid id forces the CPU
            notes.append("CPU only (--device cpu): CUDA_VISIBLE_DEVICES=-1")
        else:
            notes.append("CPU (no GPU found)")
        env.update(server_env(dep.backend_args))
        env.update(dep.env)
        ready = (ReadinessProbe("ollama-version", base),)
        engine = {"binary": binary}
        if ctx.engine.get("version"):
            engine["version"] = str(ctx.engine["version"])
        return LaunchPlan(**common, processes=(ProcessSpec("server", (binary, "serve"), env, ready),),
                          notes=tuple(notes), engine=engine, final_probes=model_ready)  # fmt: skip

    def after_start(self, *, deployment: Deployment, model: ResolvedModel, launch: LaunchPlan, report: Report,
                    deadline: float) -> None:  # fmt: skip
        """Make the served model present: pull the tag, or upload and create the GGUF file."""
        src = model_source(deployment.model)
        served = launch.served_model_name
        base = launch.endpoints["ollama"]
        present = OllamaAPI(base, deadline=deadline, what="listing models").tags()
        if src.gguf is not None:
            create_from_gguf(base, src.gguf, served, report=report, deadline=deadline)
            return
        if has_model(present, served):
            report(f"  {served} is already in Ollama ({base})")
            return
        if not has_model(present, src.tag):
            pull(base, src.tag, report=report, deadline=deadline)
        if canonical(served) != canonical(src.tag):
            api = OllamaAPI(base, deadline=deadline, what=f"copying {src.tag} to {served}")
            status, payload = api.json("POST", "/api/copy", {"source": src.tag, "destination": served})
            if status != 200:
                raise api.error(status, payload)
            report(f"  copied {src.tag} to {served} (served_model_name)")


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


def _started_by(deployment: Deployment) -> str | None:
    """The modelserve deployment that started the server on this port, if one did."""
    from launcher import state

    try:
        records = state.list_all()
    except Exception:  # a broken record must not stop a reuse
        return None
    return next((r.name for r in records if r.port == deployment.port and not r.external and r.processes), None)

"""The model-management routes: /api/tags, /api/ps, /api/pull, /api/blobs/:digest, /api/create,
/api/show, /api/copy and /api/delete.

Built from Ollama docs/api.md: GET /api/tags {models: [...]}; POST /api/pull {model, insecure,
stream} streaming {status: "pulling manifest"}, then per layer {status: "pulling <12 hex>", digest,
total, completed} with "completed" absent before the first bytes, then "verifying sha256 digest",
"writing manifest", "removing any unused layers", "success" (stream false: one {status:
"success"}); POST /api/create {model, from, files{name: digest}, adapters, template, license,
system, parameters, messages, stream, quantize} streaming "parsing GGUF", "using existing layer
...", "writing manifest", "success"; HEAD /api/blobs/:digest 200|404; POST /api/blobs/:digest 201,
or 400 when the digest does not match; POST /api/show {model} -> {modelfile, parameters, template,
details, model_info, capabilities}; POST /api/copy {source, destination}; DELETE /api/delete
{model}; GET /api/ps. Issues #2292, #4280: an unknown tag fails with "pull model manifest: file
does not exist" (HTTP 500 when not streaming). Issue #11901: a create without from/files (the old
{modelfile} form) is refused with 400 "neither 'from' or 'files' was specified".
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from datetime import datetime
from typing import Any, NamedTuple

from tests.ollama_standin.common import log
from tests.ollama_standin.generation import as_int
from tests.ollama_standin.gguf_header import GGUFError, read_gguf_metadata
from tests.ollama_standin.handler_base import BadRequest, BaseHandler
from tests.ollama_standin.registry import (
    DEFAULT_HOST,
    FILE_TYPES,
    MT_MODEL,
    MT_PARAMS,
    MT_SYSTEM,
    MT_TEMPLATE,
    REGISTRY,
)
from tests.ollama_standin.store import build_manifest, details, display_name, fake_digest, parse_name, valid_name


class CreateBase(NamedTuple):
    """What a create starts from, before the request's own layers (``error`` set: it cannot)."""

    layers: list[dict[str, Any]]
    config: dict[str, Any]
    error: str | None


class ModelRoutes(BaseHandler):
    def tags(self) -> None:
        with self.store.lock:
            models = [self.store.entry(name, path) for name, path in self.store.names()]
        self.send_json(200, {"models": models})

    def ps(self) -> None:
        now = time.time()
        out = []
        for name, expiry in sorted(self.store.loaded.items()):
            manifest = self.store.get(name)
            if manifest is None or expiry < now:
                continue
            entry = self.store.entry(name, self.store.manifest_path(name))
            entry["expires_at"] = datetime.fromtimestamp(expiry).astimezone().isoformat()
            entry["size_vram"] = 0
            out.append(entry)
        self.send_json(200, {"models": out})

    # --- pull

    def pull(self) -> None:
        body = self.json_body()
        name = body.get("model") or body.get("name")
        if not isinstance(name, str) or not valid_name(name):
            raise BadRequest(400, "invalid model name")
        stream = body.get("stream", True) is not False
        host, namespace, model, tag = parse_name(name)
        spec = REGISTRY.get(f"{namespace}/{model}:{tag}") if host == DEFAULT_HOST else None
        delay = float(os.environ.get("OLLAMA_STANDIN_PULL_DELAY", "0.01"))
        if spec is None:
            self.pull_unknown(name, stream, delay)
            return
        key = f"{namespace}/{model}:{tag}"
        layers = [{"mediaType": mt, "digest": fake_digest(key.split(":")[0], mt, str(size)), "size": size}
                  for mt, size in spec["layers"]]  # fmt: skip
        if stream:
            self.start_stream("application/x-ndjson")
            self.ndjson({"status": "pulling manifest"})
        for layer in layers:
            self.pull_layer(layer, spec["template"], stream, delay)
        for status in ("verifying sha256 digest", "writing manifest", "removing any unused layers"):
            if stream:
                self.ndjson({"status": status})
        cfg: dict[str, Any] = {"model_format": "gguf", "model_family": spec["family"], "model_families": [spec["family"]],
               "model_type": spec["parameter_size"], "file_type": spec["quantization_level"],
               **{k: spec[k] for k in ("embedding_length", "context_length") if k in spec}}  # fmt: skip
        self.store.put(name, build_manifest(self.store, layers, cfg))
        log(f"pulled model={display_name(host, namespace, model, tag)}", source="images.go")
        if stream:
            self.ndjson({"status": "success"})
            self.end_stream()
        else:
            self.send_json(200, {"status": "success"})

    def pull_unknown(self, name: str, stream: bool, delay: float) -> None:
        error = "pull model manifest: file does not exist"
        log(f"pull failed model={name} error={error}", "ERROR", "images.go")
        if not stream:
            raise BadRequest(500, error)
        self.start_stream("application/x-ndjson")
        self.ndjson({"status": "pulling manifest"})
        time.sleep(delay)
        self.ndjson({"error": error})
        self.end_stream()

    def pull_layer(self, layer: dict[str, Any], template: str, stream: bool, delay: float) -> None:
        """Progress for one layer (20 steps for a big one), then its placeholder blob."""
        digest, total = layer["digest"], layer["size"]
        status = f"pulling {digest[7:19]}"
        steps = 20 if total > 1_000_000 else 1
        if stream:
            self.ndjson({"status": status, "digest": digest, "total": total})
        for i in range(1, steps + 1):
            time.sleep(delay)
            if stream:
                self.ndjson({"status": status, "digest": digest, "total": total, "completed": total * i // steps})
        path = self.store.blob_path(digest)
        if not path.exists():
            text = template if layer["mediaType"] == MT_TEMPLATE else f"stand-in placeholder {digest}\n"
            path.write_text(text)

    # --- blobs / create

    def blob(self, method: str, digest: str) -> None:
        if not re.fullmatch(r"sha256[:-][0-9a-f]{64}", digest):
            self.read_body()
            raise BadRequest(400, "invalid digest format")
        digest = "sha256:" + digest[7:]
        path = self.store.blob_path(digest)
        if method == "HEAD":
            self.send_empty(200 if path.exists() else 404)
            return
        tmp = path.with_name(path.name + f".partial-{threading.get_ident()}")
        hasher = hashlib.sha256()
        remaining = int(self.headers.get("Content-Length") or 0)
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        with tmp.open("wb") as fh:
            if chunked:
                data = self.read_body()
                hasher.update(data)
                fh.write(data)
            while not chunked and remaining > 0:
                block = self.rfile.read(min(remaining, 1 << 20))
                if not block:
                    break
                remaining -= len(block)
                hasher.update(block)
                fh.write(block)
        got = "sha256:" + hasher.hexdigest()
        if got != digest:
            tmp.unlink(missing_ok=True)
            raise BadRequest(400, f"digest mismatch, expected \"{digest}\", got \"{got}\"")
        os.replace(tmp, path)
        self.send_empty(201)

    def create(self) -> None:
        body = self.json_body()
        name = body.get("model") or body.get("name")
        if not isinstance(name, str) or not valid_name(name):
            raise BadRequest(400, "invalid model name")
        files = body.get("files") or {}
        source = body.get("from")
        if not files and not source:
            raise BadRequest(400, "neither 'from' or 'files' was specified")
        if not isinstance(files, dict):
            raise BadRequest(400, "files must be an object of file names to digests")
        for fname, digest in files.items():
            if not isinstance(digest, str) or not self.store.blob_path(digest).exists():
                raise BadRequest(400, f"file {fname!r}: blob {digest} does not exist; push it to /api/blobs first")
        stream = body.get("stream", True) is not False
        events: list[dict[str, Any]] = []
        layers, cfg, error = self.create_from_model(str(source), events) if source else self.create_from_gguf(
            files, events)  # fmt: skip
        if error is None:
            layers = self.create_own_layers(body, layers, events)
            events.append({"status": "writing manifest"})
            self.store.put(name, build_manifest(self.store, layers, cfg))
            events.append({"status": "success"})
            log(f"created model={name}", source="create.go")
        if not stream:
            if error is not None:
                raise BadRequest(400, error)
            self.send_json(200, {"status": "success"})
            return
        self.start_stream("application/x-ndjson")
        for event in events:
            self.ndjson(event)
        if error is not None:
            self.ndjson({"error": error})
        self.end_stream()

    def create_from_model(self, source: str, events: list[dict[str, Any]]) -> CreateBase:
        """``from``: the layers and config of a model in the store."""
        base = self.store.get(source)
        if base is None:
            return CreateBase([], {}, f'model "{source}" not found')
        events.append({"status": "using existing layer"})
        return CreateBase([dict(layer) for layer in base["layers"]], dict(self.store.config(base), parent_model=source),
                          None)  # fmt: skip

    def create_from_gguf(self, files: dict[Any, Any], events: list[dict[str, Any]]) -> CreateBase:
        """``files``: the first GGUF among them, its family and file type read from its header."""
        gguf = [(f, d) for f, d in files.items() if str(f).lower().endswith(".gguf")]
        if not gguf:
            return CreateBase([], {}, "no GGUF file among the files (this stand-in creates models from GGUF only)")
        _, digest = gguf[0]
        events.append({"status": "parsing GGUF"})
        try:
            meta = read_gguf_metadata(self.store.blob_path(digest))
        except (GGUFError, OSError) as exc:
            return CreateBase([], {}, str(exc))
        arch = str(meta.get("general.architecture") or "")
        cfg = {"model_format": "gguf", "model_family": arch, "model_families": [arch] if arch else None,
               "model_type": "", "file_type": FILE_TYPES.get(as_int(meta.get("general.file_type")) or -1, "")}
        size = self.store.blob_path(digest).stat().st_size
        events.append({"status": f"using existing layer {digest}"})
        return CreateBase([{"mediaType": MT_MODEL, "digest": digest, "size": size}], cfg, None)

    def create_own_layers(self, body: dict[str, Any], layers: list[dict[str, Any]],
                          events: list[dict[str, Any]]) -> list[dict[str, Any]]:  # fmt: skip
        """``layers`` with the request's template, system and parameters replacing the base's."""
        for key, media_type in (("template", MT_TEMPLATE), ("system", MT_SYSTEM)):
            if isinstance(body.get(key), str):
                digest, size = self.store.write_blob(body[key].encode())
                layers = [layer for layer in layers if layer["mediaType"] != media_type]
                layers.append({"mediaType": media_type, "digest": digest, "size": size})
                events.append({"status": f"creating new layer {digest}"})
        if isinstance(body.get("parameters"), dict):
            digest, size = self.store.write_blob(json.dumps(body["parameters"]).encode())
            layers = [layer for layer in layers if layer["mediaType"] != MT_PARAMS]
            layers.append({"mediaType": MT_PARAMS, "digest": digest, "size": size})
            events.append({"status": f"creating new layer {digest}"})
        return layers

    # --- show / copy / delete

    def show(self) -> None:
        body = self.json_body()
        name = body.get("model") or body.get("name")
        manifest = self.store.get(name) if isinstance(name, str) else None
        if manifest is None or not isinstance(name, str):
            raise BadRequest(404, f"model '{name}' not found")
        cfg = self.store.config(manifest)
        model_layer = next((x for x in manifest["layers"] if x["mediaType"] == MT_MODEL), None)
        blob = self.store.blob_path(model_layer["digest"]) if model_layer else None
        template = self.store.layer_text(manifest, MT_TEMPLATE)
        modelfile = (f"# Modelfile generated by \"ollama show\"\n# To build a new Modelfile based on this, replace "
                     f"FROM with:\n# FROM {name}\n\nFROM {blob}\nTEMPLATE \"\"\"{template}\"\"\"\n")  # fmt: skip
        self.send_json(200, {
            "modelfile": modelfile, "parameters": self.store.layer_text(manifest, MT_PARAMS),
            "template": template, "details": details(cfg),
            "model_info": {"general.architecture": cfg.get("model_family", ""),
                           **({f"{cfg.get('model_family')}.embedding_length": cfg["embedding_length"]}
                              if "embedding_length" in cfg else {})},
            "capabilities": ["embedding"] if "embedding_length" in cfg else ["completion"], "modified_at": self.store.entry(name, self.store.manifest_path(name))["modified_at"],
        })  # fmt: skip

    def copy(self) -> None:
        body = self.json_body()
        source, destination = body.get("source"), body.get("destination")
        if not isinstance(destination, str) or not valid_name(destination):
            raise BadRequest(400, "invalid destination name")
        manifest = self.store.get(str(source)) if isinstance(source, str) else None
        if manifest is None:
            raise BadRequest(404, f"model '{source}' not found")
        self.store.put(destination, manifest)
        self.send_empty(200)

    def delete(self) -> None:
        body = self.json_body()
        name = body.get("model") or body.get("name")
        if not isinstance(name, str) or not self.store.delete(name):
            raise BadRequest(404, f"model '{name}' not found")
        self.send_empty(200)

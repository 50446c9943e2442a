"""Flask + ModelScope: the same built-in server as flask-transformers (backends/builtin_server), with
the modelscope loader (``modelscope.AutoModelForCausalLM`` / ``AutoTokenizer``).

Facts this module relies on (shared/reference/hf-fastchat.md §4, and modelscope 1.40.2's source):
- modelscope's ``from_pretrained`` loads a path that exists without any network access; a path that
  does not exist is taken as a hub ID and fails after ~25 s of retries against modelscope.cn when
  offline. So ``-m`` is resolved to a local folder here, before anything starts: a typo'd path fails
  at once (launcher.models), and an ID found in the ModelScope cache is handed over as its folder.
- modelscope 1.40.2 delegates downloads to ``modelscope_hub``, whose cache root is
  ``$MODELSCOPE_CACHE`` or ``~/.cache/modelscope``. It reads the older SDKs' layout first
  (``{root}/models/ORG/NAME`` with '.' in NAME written as '___', also under ``{root}/hub/``) and
  otherwise writes ``{root}/models/ORG--NAME/snapshots/REVISION/`` (``_find_legacy_repo_dir`` and
  ``_repo_cache_dir_path`` in modelscope_hub/_download.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from backends.base import AutoChoice
from backends.flask_transformers import FlaskTransformersBackend
from launcher import models
from launcher.core.deployment import Deployment
from launcher.core.model_ref import ResolvedModel


class FlaskModelScopeBackend(FlaskTransformersBackend):
    name: ClassVar[str] = "flask-modelscope"
    loader: ClassVar[str] = "modelscope"
    requires: ClassVar[tuple[str, ...]] = ("modelscope", "transformers", "torch", "flask", "granian")
    summary: ClassVar[str] = "built-in Flask server, modelscope loader: POST /llm/ + OpenAI /v1"
    install_hint: ClassVar[str] = "pip install 'modelserve[hf,modelscope]'"
    auto: ClassVar[AutoChoice | None] = None  # asked for by name only

    def resolve_model(
        self, deployment: Deployment, *, prepare: bool, progress: Callable[[str], None]
    ) -> ResolvedModel:
        """A folder, an alias, or an ID looked up in the ModelScope cache before the HF cache."""
        ref = deployment.model
        is_id = ref not in models.ALIASES and not Path(ref).expanduser().exists() and models.ID_RE.match(ref)
        if is_id:
            found = models.find_in_modelscope_cache(ref)
            if found is not None:
                return ResolvedModel(ref, "modelscope-cache", str(found), ref, f"ModelScope cache {found}")
        return models.resolve(ref, prepare=prepare, progress=progress, caches=("modelscope", "hf"))

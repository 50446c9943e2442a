"""Model references: resolve ``-m`` to a local folder, a cached hub ID, or the demo alias.

The names below are the package's interface; the modules are ``resolve``, ``caches`` (Hugging
Face and ModelScope caches), ``aliases`` (the built-in demo model) and ``gguf_convert`` (a child
program).
"""

from __future__ import annotations

from launcher.core.model_ref import ResolvedModel
from launcher.models.aliases import ALIASES, COMPLETE_MARKER, Alias, alias_dir, ensure_alias
from launcher.models.caches import find_in_hf_cache, find_in_modelscope_cache, hf_cache_dir, modelscope_cache_dir
from launcher.models.resolve import ID_RE, resolve

__all__ = [
    "ALIASES", "COMPLETE_MARKER", "ID_RE", "Alias", "ResolvedModel", "alias_dir", "ensure_alias", "find_in_hf_cache",
    "find_in_modelscope_cache", "hf_cache_dir", "modelscope_cache_dir", "resolve",
]  # fmt: skip

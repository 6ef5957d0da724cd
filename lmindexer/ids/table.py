"""The ID table, read in one place: <folder>/table (parquet: doc_id, codes, suffix, ...) and <folder>/summary.json
(what made it and its counts), as assign-ids and baseline-ids write them."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import storage
from ..config import StorageConfig
from ..quantizers.codes import IdSpec


@dataclass
class IdTable:
    doc_ids: np.ndarray  # [N] str
    codes: np.ndarray  # [N, T] int64
    suffix: np.ndarray | None  # [N] int64; None for a peer index (codes only)
    summary: dict = field(default_factory=dict)
    name: str = ""

    @property
    def row(self) -> dict:
        return {d: i for i, d in enumerate(self.doc_ids)}

    @property
    def codebook_size(self) -> int:
        """K from the table's summary, else the largest code + 1."""
        return int(self.summary.get("codebook_size") or int(self.codes.max()) + 1)

    @property
    def spec(self) -> IdSpec:
        """Positions and K of the table, and the suffixes its IDs use."""
        suffixes = int(self.suffix.max()) + 1 if self.suffix is not None and len(self.suffix) else 1
        return IdSpec(int(self.codes.shape[1]), self.codebook_size, suffixes)

    @cached_property
    def prefix_groups(self) -> list[np.ndarray]:
        """For each prefix length 1..num_positions, a number per document shared by the documents whose codes agree
        up to that length."""
        return [
            np.unique(self.codes[:, : t + 1], axis=0, return_inverse=True)[1].reshape(-1)
            for t in range(self.codes.shape[1])
        ]


def read_id_table(uri: str, storage_cfg: StorageConfig | None = None, name: str = "") -> IdTable:
    """The table of an ID folder (or the table folder itself)."""
    fs, path = storage.filesystem(uri, storage_cfg)
    folder = path
    if storage.exists(fs, storage.join(path, "table")):
        path = storage.join(path, "table")
    elif path.rstrip("/").endswith("/table") and storage.exists(fs, path):
        folder = path.rstrip("/")[: -len("/table")]
    else:
        raise FileNotFoundError(f"no ID table at {uri}: run assign-ids or baseline-ids first")
    t = pq.read_table(path, filesystem=fs, columns=["doc_id", "codes", "suffix"])
    lists = t.column("codes").combine_chunks()
    lengths = pc.list_value_length(lists).to_numpy()
    if len(set(lengths.tolist())) > 1:
        raise ValueError(f"{uri}: ID tables must have one code count per row, found {sorted(set(lengths))}")
    codes = lists.flatten().to_numpy().astype(np.int64).reshape(len(t), -1)
    done = storage.join(folder, "summary.json")
    summary = storage.read_json(fs, done) if storage.exists(fs, done) else {}
    return IdTable(
        t.column("doc_id").to_numpy(zero_copy_only=False).astype(object),
        codes,
        t.column("suffix").to_numpy().astype(np.int64),
        summary,
        name,
    )

"""The ID spec (positions, codebook size, suffixes) and the printed key of a code sequence, shared by the ID
methods, the ID table and the generator."""

from __future__ import annotations

from dataclasses import dataclass


def code_key(codes) -> str:
    """'3-1' for codes (3, 1); '' for no codes (the root of a hierarchy)."""
    return "-".join(str(int(c)) for c in codes)


@dataclass(frozen=True)
class IdSpec:
    """The shape of an ID: `num_positions` codes, each in 0..codebook_size-1, then a collision suffix in
    0..suffixes-1. Shared by the indexer, the baseline methods, ID tables and the generator's vocabulary. The same
    two words name the ID length and the codebook size everywhere, from the config (indexer.num_positions,
    indexer.codebook_size) to saved metadata; folders saved with the older words still load (positions_of,
    size_of)."""

    num_positions: int
    codebook_size: int
    suffixes: int = 1

    def to_json(self) -> dict:
        return {"num_positions": self.num_positions, "codebook_size": self.codebook_size, "suffixes": self.suffixes}

    @classmethod
    def from_json(cls, data: dict) -> "IdSpec":
        return cls(positions_of(data), size_of(data), int(data.get("suffixes", 1)))


def positions_of(meta: dict) -> int:
    """The ID length of saved metadata: num_positions, or the older positions / levels."""
    for key in ("num_positions", "positions", "levels"):
        if key in meta:
            return int(meta[key])
    raise KeyError(f"no ID length (num_positions) in {sorted(meta)}")


def size_of(meta: dict) -> int:
    """The codebook size of saved metadata: codebook_size, or the older size."""
    for key in ("codebook_size", "size"):
        if key in meta:
            return int(meta[key])
    raise KeyError(f"no codebook size (codebook_size) in {sorted(meta)}")

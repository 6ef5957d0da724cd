"""The ID spec (positions, codebook size, suffixes) and the printed key of a code sequence, shared by the ID
methods, the ID table and the generator."""

from __future__ import annotations

from dataclasses import dataclass


def code_key(codes) -> str:
    """'3-1' for codes (3, 1); '' for no codes (the root of a hierarchy)."""
    return "-".join(str(int(c)) for c in codes)


@dataclass(frozen=True)
class IdSpec:
    """The shape of an ID: `positions` codes, each in 0..codebook_size-1, then a collision suffix in
    0..suffixes-1. Shared by the indexer, the baseline methods, ID tables and the generator's vocabulary."""

    positions: int
    codebook_size: int
    suffixes: int = 1

    def to_json(self) -> dict:
        return {"positions": self.positions, "codebook_size": self.codebook_size, "suffixes": self.suffixes}

    @classmethod
    def from_json(cls, data: dict) -> "IdSpec":
        return cls(int(data["positions"]), int(data["codebook_size"]), int(data.get("suffixes", 1)))

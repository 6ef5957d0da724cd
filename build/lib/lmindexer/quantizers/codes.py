"""The printed key of a code sequence, shared by ID methods and the ID table."""
from __future__ import annotations


def code_key(codes) -> str:
    """'3-1' for codes (3, 1); '' for no codes (the root of a hierarchy)."""
    return "-".join(str(int(c)) for c in codes)

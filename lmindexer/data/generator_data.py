"""Small readers for the non-corpus parts of public datasets: BEIR queries and qrels, user item sequences."""

from __future__ import annotations

import csv
import io
import json

from .. import storage


def _read_text(path: str) -> str:
    fs, p = storage.filesystem(path)
    with fs.open_input_stream(p) as f:
        return f.read().decode("utf-8")


def read_queries(beir_folder: str) -> dict[str, str]:
    """query id -> text from a BEIR folder's queries.jsonl."""
    out = {}
    for line in _read_text(storage.join(beir_folder, "queries.jsonl")).splitlines():
        if line.strip():
            q = json.loads(line)
            out[str(q["_id"])] = q["text"]
    return out


def read_qrels(beir_folder: str, split: str) -> dict[str, dict[str, int]]:
    """query id -> {doc id: relevance} from qrels/<split>.tsv (header `query-id corpus-id score`)."""
    out: dict[str, dict[str, int]] = {}
    rows = csv.reader(io.StringIO(_read_text(storage.join(beir_folder, "qrels", f"{split}.tsv"))), delimiter="\t")
    header = next(rows)
    if [h.strip() for h in header[:2]] != ["query-id", "corpus-id"]:
        raise ValueError(f"qrels/{split}.tsv: expected header 'query-id corpus-id score', got {header}")
    for row in rows:
        if row:
            out.setdefault(row[0], {})[row[1]] = int(row[2]) if len(row) > 2 else 1
    return out


def read_sequences(path: str) -> dict[str, list[str]]:
    """user -> items in time order, from lines `user item item ...` (Amazon Beauty's Beauty.txt, the demo's)."""
    out = {}
    for n, line in enumerate(_read_text(path).splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2:
            raise ValueError(f"{path}:{n}: a sequence needs a user and at least one item")
        out[parts[0]] = parts[1:]
    return out

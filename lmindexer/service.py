"""The Python API over a finished run: give new documents their IDs, and recommend the next items after a history.

`IdService` loads an indexer and its ID table. `assign` returns a known document's ID as the table has it, and gives
a new document the next free suffix of its codes. The new rows are written to the table's folder (a parquet file of
their own, renamed into place whole) before the call returns, under a lock file beside the table, and every call
first reads the rows other processes added since. So processes that share the folder never hand out one ID twice,
and a restart loses no acknowledged assignment. `RetrieveService` loads a retrieval generator and decodes a query's
top-k documents under the trie of its ID table (only IDs that exist). `RecService` loads a one-pass recommender
(`generator.kind=seqrec`) with the items it was trained on and ranks them exactly. A bad request raises
`RequestError`, whose text says what to change; the service stays usable.

    service = IdService.load("runs/quickstart/indexer", "runs/quickstart/ids")
    service.assign([{"doc_id": "new-1", "text": "Acme kettle 1.7 l; stainless steel"}])
    # [{"doc_id": "new-1", "sid": "12-7-3-0", "codes": [12, 7, 3], "suffix": 0, "new": True}]
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
import uuid
from contextlib import contextmanager

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from .downstream.decode import beam_search
from .downstream.examples import query_sources
from .downstream.trie import TrieLogitsProcessor, build_trie
from .ids.infer import EmbedActor
from .ids.table import read_id_table
from .ids.unique import sid
from .models.generator import load_generator
from .models.indexer import SemanticIndexer
from .models.pretrained import resolve
from .models.seqrec import ITEMS_FILE, SeqRec, rank
from .models.tokenizer import encode_texts
from .raydata import inference_device

DEFAULT_SOURCE_LENGTH = 64  # generator.max_source_length, for generator folders that do not record theirs

SERVED_PREFIX = "served-"  # table files written by IdService (assign-ids' own files keep their names)


class RequestError(ValueError):
    """A request the service cannot answer as sent; the text names the field and what to change."""


def _table_schema() -> pa.Schema:
    return pa.schema(
        [("doc_id", pa.string()), ("codes", pa.list_(pa.int32())), ("suffix", pa.int32()), ("sid", pa.string())]
    )


class IdService:
    """IDs for documents, new and known, from an indexer and the ID table of the same run."""

    def __init__(self, indexer: SemanticIndexer, table_dir: str, max_text_chars: int = 20000, max_batch: int = 256):
        self.indexer, self.folder = indexer, table_dir
        self.max_text_chars, self.max_batch = max_text_chars, max_batch
        self.table_files = os.path.join(table_dir, "table")
        self.lock_path = os.path.join(table_dir, ".serve.lock")
        self._local = threading.Lock()  # threads of this process; the lock file covers other processes
        self._seen: set[str] = set()  # table files already read
        self._by_doc: dict[str, tuple] = {}  # doc_id -> (codes tuple, suffix)
        self._next: dict[tuple, int] = {}  # codes tuple -> next free suffix
        self._refresh()

    @classmethod
    def load(cls, indexer_dir: str, table_dir: str, **kwargs) -> "IdService":
        return cls(SemanticIndexer.from_pretrained(indexer_dir), table_dir, **kwargs)

    def _refresh(self) -> None:
        """Read the table files this process has not read yet (assign-ids' own, and those other processes
        served)."""
        files = sorted(f for f in os.listdir(self.table_files) if f.endswith(".parquet") and not f.startswith("."))
        for name in files:
            if name in self._seen:
                continue
            t = pq.read_table(os.path.join(self.table_files, name), columns=["doc_id", "codes", "suffix"])
            for doc, codes, suffix in zip(*(t.column(c).to_pylist() for c in ("doc_id", "codes", "suffix"))):
                key = tuple(codes)
                self._by_doc[doc] = (key, suffix)
                self._next[key] = max(self._next.get(key, 0), suffix + 1)
            self._seen.add(name)

    @contextmanager
    def _locked(self):
        with self._local, open(self.lock_path, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def describe(self) -> dict:
        """What is loaded: the ID shape, the documents with an ID, the indexer's text cut."""
        with self._locked():
            self._refresh()
            return {
                "num_positions": self.indexer.cfg.num_positions,
                "codebook_size": self.indexer.cfg.codebook_size,
                "documents": len(self._by_doc),
                "table": self.folder,
                "max_length_tokens": self.indexer.max_length,
                "max_text_chars": self.max_text_chars,
                "max_batch": self.max_batch,
            }

    def check(self, docs) -> list[dict]:
        """The documents of a request, or RequestError naming what is wrong."""
        if not isinstance(docs, list) or not docs:
            raise RequestError("documents: send a non-empty list of {doc_id, text}")
        if len(docs) > self.max_batch:
            raise RequestError(f"documents: {len(docs)} in one request; at most {self.max_batch}")
        seen = set()
        for i, d in enumerate(docs):
            if not isinstance(d, dict):
                raise RequestError(f"documents[{i}]: an object with doc_id and text")
            doc_id, text = d.get("doc_id"), d.get("text")
            if not isinstance(doc_id, str) or not doc_id.strip():
                raise RequestError(f"documents[{i}].doc_id: a non-empty string")
            if doc_id in seen:
                raise RequestError(f"documents[{i}].doc_id={doc_id!r} appears twice in the request")
            seen.add(doc_id)
            if doc_id in self._by_doc:
                continue  # a known document: its text is not needed
            if not isinstance(text, str) or not text.strip():
                raise RequestError(f"documents[{i}].text: a non-empty string for a new document ({doc_id!r})")
            if len(text) > self.max_text_chars:
                raise RequestError(
                    f"documents[{i}].text: {len(text)} characters; at most {self.max_text_chars} (data.max_text_chars)"
                )
        return docs

    @torch.no_grad()
    def codes(self, texts: list[str]) -> np.ndarray:
        """[n, num_positions] codes of texts, as assign-ids computes them."""
        enc = encode_texts(self.indexer.tokenizer, texts, self.indexer.max_length)
        return self.indexer.generate_codes(enc["input_ids"], enc["attention_mask"]).numpy()

    def assign(self, docs: list[dict]) -> list[dict]:
        """Each document's ID, in request order: a known doc_id's as the table holds it, a new one's from its codes
        with the next free suffix, written to the table before this returns."""
        got = self.assign_many([docs])[0]
        if isinstance(got, RequestError):
            raise got
        return got

    def assign_many(self, requests: list) -> list:
        """`assign` for several requests at once (a server's batch): one indexer pass for every new document and one
        table file; each request's answer, or the RequestError that refuses it (the others go on)."""
        answers: list = []
        for docs in requests:
            try:
                answers.append(self.check(docs))
            except RequestError as e:
                answers.append(e)
        valid = [a for a in answers if not isinstance(a, RequestError)]
        with self._locked():
            self._refresh()  # another process may have served some of these meanwhile
            new, seen = [], set()
            for docs in valid:
                for d in docs:
                    if d["doc_id"] not in self._by_doc and d["doc_id"] not in seen:
                        new.append(d)
                        seen.add(d["doc_id"])
            if new:
                rows = []
                for d, c in zip(new, self.codes([d["text"] for d in new]).tolist()):
                    key = tuple(int(x) for x in c)
                    suffix = self._next.get(key, 0)
                    self._next[key] = suffix + 1
                    rows.append((d["doc_id"], list(key), suffix, sid(key, suffix)))
                self._write(rows)
                for doc, key, suffix, _ in rows:
                    self._by_doc[doc] = (tuple(key), suffix)
        return [a if isinstance(a, RequestError) else [self._answer(d["doc_id"], seen) for d in a] for a in answers]

    def _answer(self, doc_id: str, fresh: set) -> dict:
        key, suffix = self._by_doc[doc_id]
        return {"doc_id": doc_id, "sid": sid(key, suffix), "codes": list(key), "suffix": suffix, "new": doc_id in fresh}

    def _write(self, rows: list[tuple]) -> None:
        """The rows as one new table file: written under a hidden name, flushed to disk, then renamed into place,
        so a reader sees all of it or nothing."""
        name = f"{SERVED_PREFIX}{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
        columns = list(zip(*rows))
        table = pa.table(
            [pa.array(columns[0]), pa.array(columns[1]), pa.array(columns[2]), pa.array(columns[3])],
            schema=_table_schema(),
        )
        tmp = os.path.join(self.table_files, "." + name)
        pq.write_table(table, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(self.table_files, name))
        self._seen.add(name)


class RecService:
    """The next items after a history, from a one-pass recommender and the items it was trained on."""

    def __init__(self, model: SeqRec, items: list[str], max_k: int = 100, max_history: int = 1000):
        if len(items) != model.cfg.items:
            raise ValueError(f"the recommender scores {model.cfg.items} items, but {len(items)} item ids were given")
        self.model, self.items, self.max_k, self.max_history = model, items, max_k, max_history
        self.number = {d: i + 1 for i, d in enumerate(items)}

    @classmethod
    def load(cls, generator_dir: str, table_dir: str | None = None, **kwargs) -> "RecService":
        """The recommender in `generator_dir`; its items from the folder's items.parquet (written by train-generator),
        else the ID table's rows in order (a table that has grown since then cannot be used so)."""
        path = os.path.join(generator_dir, ITEMS_FILE)
        if os.path.exists(path):
            items = pq.read_table(path).column("doc_id").to_pylist()
        elif table_dir:
            items = list(read_id_table(table_dir).doc_ids)
        else:
            raise FileNotFoundError(f"{path} is missing: name the ID table the recommender was trained on")
        return cls(SeqRec.from_pretrained(generator_dir), items, **kwargs)

    def describe(self) -> dict:
        return {"items": len(self.items), "max_k": self.max_k, "max_history": self.max_history}

    def recommend(self, history, k: int = 10) -> list[str]:
        """The top-k item ids after `history` (item ids, oldest first), its own items left out."""
        if not isinstance(history, list) or not history:
            raise RequestError("history: send a non-empty list of item ids, oldest first")
        if len(history) > self.max_history:
            raise RequestError(f"history: {len(history)} items; at most {self.max_history}")
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= self.max_k:
            raise RequestError(f"k: an integer from 1 to {self.max_k}")
        unknown = [h for h in history if h not in self.number]
        if unknown:
            raise RequestError(f"history: {len(unknown)} unknown item id(s), first {unknown[0]!r}")
        ranked = rank(self.model, [[self.number[h] for h in history]], k)[0]
        return [self.items[n - 1] for n in ranked]


class RetrieveService:
    """The top-k documents for a query, from a retrieval generator (generator.task=retrieval) decoding under the trie
    of the ID table it was trained on: beam search, so every answer is a document that has an ID."""

    def __init__(self, generator_dir: str, max_k: int = 100, max_query_chars: int = 2000):
        self.model, self.tokenizer, self.vocab, info = load_generator(generator_dir)
        self.device = inference_device(False)[0]
        self.model = self.model.to(self.device).eval()
        if info.get("task", "retrieval") != "retrieval":
            raise ValueError(f"{generator_dir} is a {info['task']} generator; /retrieve needs generator.task=retrieval")
        table = read_id_table(info["ids"])
        fits = np.asarray(table.suffix) < self.vocab.suffixes  # IDs served since training may need a new suffix
        targets = self.vocab.tokens(table.codes[fits], table.suffix[fits])
        self.doc_of = dict(zip(self.vocab.sids(targets), np.asarray(table.doc_ids, dtype=object)[fits]))
        trie = build_trie(targets)
        self.depth = trie["depth"]
        self.processor = TrieLogitsProcessor(trie, self.tokenizer.eos_token_id, self.tokenizer.pad_token_id)
        self.max_k, self.max_query_chars = min(max_k, len(targets)), max_query_chars
        self.max_source_length = info.get("max_source_length", DEFAULT_SOURCE_LENGTH)
        self.encoder = None
        if info.get("encoder"):  # the generator reads the query's embedding by a frozen encoder
            max_length = info.get("encoder_max_length", 128)
            self.encoder = EmbedActor("encoder", resolve(info["encoder"]), max_length, bf16=False)
        self.info = {
            "documents": len(targets),
            "documents_without_id_tokens": int((~fits).sum()),  # until the generator is trained on the grown table
            "max_k": self.max_k,
            "ids": info["ids"],
            "encoder": info.get("encoder"),
        }

    @classmethod
    def load(cls, generator_dir: str, **kwargs) -> "RetrieveService":
        return cls(generator_dir, **kwargs)

    def describe(self) -> dict:
        return dict(self.info)

    def check(self, request) -> tuple[str, int]:
        """(query, k) of a request {"query", "k"}, or RequestError naming what is wrong."""
        if not isinstance(request, dict):
            raise RequestError("send a JSON object with query and k")
        query, k = request.get("query"), request.get("k", 10)
        if not isinstance(query, str) or not query.strip():
            raise RequestError("query: a non-empty string")
        if len(query) > self.max_query_chars:
            raise RequestError(f"query: {len(query)} characters; at most {self.max_query_chars}")
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= self.max_k:
            raise RequestError(f"k: an integer from 1 to {self.max_k}")
        return query, k

    def retrieve(self, query, k: int = 10) -> list[dict]:
        """[{doc_id, sid, score}] of the k best documents for `query`, best first (score: the ID's length-normalised
        log-probability under the generator; k beams)."""
        got = self.retrieve_many([{"query": query, "k": k}])[0]
        if isinstance(got, RequestError):
            raise got
        return got

    @torch.no_grad()
    def retrieve_many(self, requests: list) -> list:
        """`retrieve` for several requests at once (a server's batch): the queries that ask for the same k decode
        together; each request's answer, or the RequestError that refuses it (the others go on)."""
        answers: list = [None] * len(requests)
        by_k: dict[int, list] = {}
        for i, request in enumerate(requests):
            try:
                query, k = self.check(request)
                by_k.setdefault(k, []).append((i, query))
            except RequestError as e:
                answers[i] = e
        for k, group in by_k.items():
            queries = [q for _, q in group]
            if self.encoder is not None:
                emb = self.encoder({"doc_id": np.zeros(len(queries)), "text": queries})["emb"]
                source = torch.from_numpy(np.asarray(emb, dtype=np.float32))
            else:
                packed = query_sources(self.tokenizer, queries, self.max_source_length)
                source = torch.from_numpy(packed.astype(np.int64))
            tokens, scores = beam_search(self.model, self.processor, self.depth, k, source.to(self.device), None, True)
            sids, scores = self.vocab.sids(tokens.cpu().numpy()), scores.cpu().tolist()
            for j, (i, _) in enumerate(group):
                answers[i] = [
                    {"doc_id": self.doc_of[sids[r]], "sid": sids[r], "score": round(scores[r], 4)}
                    for r in range(j * k, (j + 1) * k)
                ]
        return answers

"""The Python API over a finished run (lmindexer.service): known documents keep their IDs, new ones get the next free
suffix written to the table before the answer, concurrent processes never hand out one ID twice, a restart loses
nothing, bad requests are refused with their reason, and the recommender names items by their ids."""

import multiprocessing as mp

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from lmindexer.config import IndexerConfig, ModelConfig
from lmindexer.ids.table import read_id_table
from lmindexer.ids.unique import sid
from lmindexer.models.backbone import load_backbone
from lmindexer.models.indexer import SemanticIndexer
from lmindexer.models.seqrec import SeqRec, SeqRecConfig, item_rows
from lmindexer.models.tokenizer import encode_texts
from lmindexer.service import IdService, RecService, RequestError

TEXTS = [f"item {i} colour {i % 5} size {i % 3}" for i in range(60)]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """An indexer (a small encoder, untrained codebooks) and an ID table of its first 40 texts, as assign-ids
    writes one: (indexer folder, ID folder)."""
    root = tmp_path_factory.mktemp("run")
    model, tok = load_backbone(ModelConfig(vocab_size=200, backbone="encoder"), TEXTS)
    model.save_pretrained(root / "backbone")
    tok.save_pretrained(root / "backbone")
    torch.manual_seed(0)
    idx = SemanticIndexer.from_backbone(str(root / "backbone"), IndexerConfig(num_positions=2, codebook_size=4), 16)
    idx.state["positions_done"] = 2
    idx.save_pretrained(str(root / "indexer"))
    idx = SemanticIndexer.from_pretrained(str(root / "indexer"))
    enc = encode_texts(idx.tokenizer, TEXTS[:40], idx.max_length)
    with torch.no_grad():
        codes = idx.generate_codes(enc["input_ids"], enc["attention_mask"]).numpy()
    suffix, taken = [], {}
    for c in map(tuple, codes.tolist()):
        suffix.append(taken.get(c, 0))
        taken[c] = suffix[-1] + 1
    (root / "ids" / "table").mkdir(parents=True)
    pq.write_table(
        pa.table(
            {
                "doc_id": [f"d{i}" for i in range(40)],
                "codes": pa.array(codes.tolist(), pa.list_(pa.int32())),
                "suffix": pa.array(suffix, pa.int32()),
                "sid": [sid(c, s) for c, s in zip(codes.tolist(), suffix)],
            }
        ),
        root / "ids" / "table" / "part-0.parquet",
    )
    return str(root / "indexer"), str(root / "ids")


def test_known_documents_keep_their_ids_and_new_ones_are_written_before_the_answer(run):
    indexer, ids = run
    service = IdService.load(indexer, ids)
    table = read_id_table(ids)
    known = service.assign([{"doc_id": "d3"}])[0]
    assert known["sid"] == sid(table.codes[3], table.suffix[3]) and not known["new"]
    got = service.assign([{"doc_id": "new-1", "text": TEXTS[41]}, {"doc_id": "d5", "text": "ignored"}])
    assert got[0]["new"] and not got[1]["new"]
    after = read_id_table(ids)  # on disk already
    assert "new-1" in set(after.doc_ids) and len(after.doc_ids) == 41
    sids = [sid(c, s) for c, s in zip(after.codes, after.suffix)]
    assert len(set(sids)) == len(sids) and got[0]["sid"] in sids
    same = service.codes([TEXTS[41]])[0].tolist()
    assert got[0]["codes"] == same  # the codes assign-ids would give it
    again = IdService.load(indexer, ids).assign([{"doc_id": "new-1", "text": TEXTS[41]}])[0]
    assert again["sid"] == got[0]["sid"] and not again["new"]  # a restart knows it


def _assign_many(args):
    indexer, ids, worker = args
    service = IdService.load(indexer, ids)
    out = []
    for i in range(6):  # the same few texts from every process: their codes collide
        out += service.assign([{"doc_id": f"w{worker}-{i}", "text": TEXTS[50 + i % 3]}])
    return out


def test_concurrent_processes_never_hand_out_one_id_twice(run):
    indexer, ids = run
    with mp.get_context("spawn").Pool(3) as pool:
        answers = [a for part in pool.map(_assign_many, [(indexer, ids, w) for w in range(3)]) for a in part]
    assert len({a["sid"] for a in answers}) == len(answers) == 18
    table = read_id_table(ids)
    sids = [sid(c, s) for c, s in zip(table.codes, table.suffix)]
    assert len(set(sids)) == len(sids) and len(set(table.doc_ids)) == len(table.doc_ids)
    assert {a["doc_id"] for a in answers} <= set(table.doc_ids)


@pytest.mark.parametrize(
    "request_, reason",
    [
        ([], "non-empty list"),
        ("text", "non-empty list"),
        ([{"text": "no id"}], "doc_id"),
        ([{"doc_id": "x1", "text": ""}], "non-empty string for a new document"),
        ([{"doc_id": "x2", "text": "y" * 50}], "at most 40"),
        ([{"doc_id": "x3", "text": "a"}, {"doc_id": "x3", "text": "b"}], "twice"),
        ([{"doc_id": f"x{i}", "text": "a"} for i in range(9)], "at most 8"),
    ],
)
def test_bad_requests_are_refused_with_their_reason_and_the_service_goes_on(run, request_, reason):
    indexer, ids = run
    service = IdService.load(indexer, ids, max_text_chars=40, max_batch=8)
    before = len(read_id_table(ids).doc_ids)
    with pytest.raises(RequestError, match=reason):
        service.assign(request_)
    assert len(read_id_table(ids).doc_ids) == before  # nothing written
    assert service.assign([{"doc_id": "d0"}])[0]["sid"]


def test_the_recommender_takes_and_returns_item_ids(tmp_path):
    codes = np.array([[0, 0], [0, 1], [1, 0], [1, 1], [2, 0]])
    rows, count = item_rows("prefixes", codes, np.zeros(5, dtype=np.int64), 5)
    model = SeqRec(SeqRecConfig(items=5, rows=count, compose="prefixes", dim=8, layers=1, heads=1, max_len=4), rows)
    model.save_pretrained(str(tmp_path))
    items = ["a", "b", "c", "d", "e"]
    pq.write_table(pa.table({"doc_id": items}), tmp_path / "items.parquet")
    service = RecService.load(str(tmp_path), max_k=4)
    top = service.recommend(["a", "c"], k=3)
    assert len(top) == 3 and not {"a", "c"} & set(top) and set(top) <= set(items)
    for history, k, reason in [([], 3, "non-empty"), (["a", "zz"], 3, "unknown item id"), (["a"], 9, "k: an integer")]:
        with pytest.raises(RequestError, match=reason):
            service.recommend(history, k)

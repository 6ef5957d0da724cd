"""`prepare` on a real local Ray: formats, shards, bad input summaries, the shared public corpora."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
from conftest import shared_data

from lmindexer.config import load_config
from lmindexer.data.corpus import load_docs, read_docs
from lmindexer.data.readers import BadInputError
from lmindexer.paths import RunContext
from lmindexer.stages.prepare import prepare


def docs(cfg):
    return load_docs(RunContext.of(cfg)).to_pandas().sort_values("doc_id").reset_index(drop=True)


# each input parsed and summed up in this process (small inputs) and as Ray Data pipelines (ray.in_process_rows=0)
BOTH_WAYS = pytest.mark.parametrize("where", [[], ["ray.in_process_rows=0"]], ids=["in-process", "ray-data"])


@BOTH_WAYS
def test_bad_input_summary_and_skipped_rows(ray_session, tmp_path, where):
    rows = [json.dumps({"doc_id": f"d{i}", "title": f"title {i}", "text": "body"}).encode() for i in range(20)]
    rows += [
        json.dumps({"doc_id": "d3", "title": "again"}).encode(),  # duplicate_id
        json.dumps({"doc_id": "e1", "title": " ", "text": ""}).encode(),  # empty_text
        json.dumps({"title": "who am i"}).encode(),  # missing_id
        json.dumps({"doc_id": "e2", "body": "x"}).encode(),  # missing_text
        b'{"doc_id": "e3", "title": "\xff\xfe"}',  # undecodable
        b'{"doc_id": "e4"',  # malformed
        json.dumps({"doc_id": "e5", "text": "y" * 500}).encode(),
    ]  # too_long
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_bytes(b"\n".join(rows[:12]))
    (tmp_path / "in" / "b.jsonl").write_bytes(b"\n".join(rows[12:]))
    cfg = load_config(
        overrides=[
            f"output_dir={tmp_path}/out",
            f"data.input={tmp_path}/in",
            "data.max_text_chars=100",
            "data.on_long=skip",
            "data.rows_per_shard=8",
            *where,
        ]
    )
    summary = prepare(cfg.data, RunContext.of(cfg), cfg.demo)
    assert summary["read"] == 27 and summary["written"] == 20
    assert summary["skipped"] == {
        "duplicate_id": 1,
        "empty_text": 1,
        "missing_id": 1,
        "missing_text": 1,
        "undecodable": 1,
        "malformed": 1,
        "too_long": 1,
    }
    out = docs(cfg)
    assert sorted(out.doc_id) == sorted(f"d{i}" for i in range(20))
    assert out.set_index("doc_id").loc["d3", "text"] == "title 3; body"  # the first occurrence wins
    assert len(list((tmp_path / "out" / "corpus" / "docs").glob("*.parquet"))) >= 3
    skipped = ray.data.read_parquet(str(tmp_path / "out" / "corpus" / "skipped")).to_pandas()
    assert sorted(skipped["_skip"]) == sorted(summary["skipped"])
    assert json.loads((tmp_path / "out" / "corpus" / "summary.json").read_text())["written"] == 20


@BOTH_WAYS
def test_on_bad_error_stops_with_the_cause(ray_session, tmp_path, where):
    (tmp_path / "a.jsonl").write_text('{"doc_id": "1", "text": "ok"}\n{"doc_id": "1", "text": "dup"}\n')
    cfg = load_config(
        overrides=[f"output_dir={tmp_path}/out", f"data.input={tmp_path}/a.jsonl", "data.on_bad=error", *where]
    )
    with pytest.raises(BadInputError, match="duplicate doc_id '1'"):
        prepare(cfg.data, RunContext.of(cfg), cfg.demo)
    (tmp_path / "b.jsonl").write_text('{"doc_id": "1", "text": "ok"}\n{"doc_id": "2", "text": " "}\n')
    cfg.data.input = f"{tmp_path}/b.jsonl"
    with pytest.raises(BadInputError, match="empty_text"):
        prepare(cfg.data, RunContext.of(cfg), cfg.demo)


def test_glob_of_parquet_and_tsv_shards(ray_session, tmp_path):
    for i in range(3):
        pq.write_table(
            pa.table(
                {"id": [f"p{i}-{j}" for j in range(5)], "text": ["some text"] * 5, "score": [j * 1.5 for j in range(5)]}
            ),
            tmp_path / f"part-{i}.parquet",
        )
    cfg = load_config(overrides=[f"output_dir={tmp_path}/out", f"data.input={tmp_path}/part-*.parquet"])
    assert prepare(cfg.data, RunContext.of(cfg), cfg.demo)["written"] == 15
    out = docs(cfg)
    assert json.loads(out.extra[0]) == {"score": 0.0}
    # the driver-side read gives the rows Ray Data gives, once each, whatever the batch size
    batches = list(read_docs(RunContext.of(cfg), ["doc_id", "text"], batch_size=4))
    read = sorted(zip(*(sum((b.column(c).to_pylist() for b in batches), []) for c in ("doc_id", "text"))))
    assert read == sorted(zip(out.doc_id, out.text)) and max(b.num_rows for b in batches) == 4
    (tmp_path / "t.tsv").write_text("doc_id\ttitle\tlabel\n1\tfirst\tA\n2\tsecond\tB\n")
    cfg = load_config(
        overrides=[f"output_dir={tmp_path}/out2", f"data.input={tmp_path}/t.tsv", "data.label_fields=label"]
    )
    prepare(cfg.data, RunContext.of(cfg), cfg.demo)
    assert list(docs(cfg).label) == ["A", "B"]


def test_builtin_demo_corpus(ray_session, tmp_path):
    cfg = load_config("configs/quickstart.yaml", [f"output_dir={tmp_path}", "demo.num_docs=300"])
    summary = prepare(cfg.data, RunContext.of(cfg), cfg.demo)
    assert summary["written"] == 300 and summary["skipped"] == {}
    out = docs(cfg)
    assert out.label.nunique() == 4 and all(len(labels) == 3 for labels in out.labels)


def test_amazon_beauty_items(ray_session, tmp_path):
    shared_data("amazon_beauty/derived/items.jsonl")
    cfg = load_config("configs/beauty.yaml", [f"output_dir={tmp_path}"])
    cfg.data.input = str(shared_data("amazon_beauty/derived/items.jsonl"))
    summary = prepare(cfg.data, RunContext.of(cfg), cfg.demo)
    assert summary["read"] == summary["written"] == 12101
    out = docs(cfg)
    assert out.doc_id.is_unique and out.label.nunique() == 6


def test_scifact_beir_folder(ray_session, tmp_path):
    folder = shared_data("scifact/derived_beir")
    cfg = load_config("configs/scifact.yaml", [f"output_dir={tmp_path}", f"data.input={folder}"])
    assert prepare(cfg.data, RunContext.of(cfg), cfg.demo)["written"] == 5183


def test_labelled_csv_without_header(ray_session, tmp_path):
    path = shared_data("text_labeled/ag_news/train.csv")
    cfg = load_config("configs/ag_news.yaml", [f"output_dir={tmp_path}", f"data.input={path}"])
    assert prepare(cfg.data, RunContext.of(cfg), cfg.demo)["written"] == 4000
    assert sorted(docs(cfg).label.unique()) == ["0", "1", "2", "3"]

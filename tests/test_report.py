"""id-report on hand-made tables whose figures are known: ours (parquet) and a peer JSON index joined by a key."""

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lmindexer.cli import main
from lmindexer.config import load_config
from lmindexer.paths import RunContext
from lmindexer.stages.id_report import id_report


@pytest.fixture
def setup(tmp_path):
    n = 60
    label = [f"c{i % 3}" for i in range(n)]
    docs = tmp_path / "corpus" / "docs"
    docs.mkdir(parents=True)
    pq.write_table(
        pa.table(
            {
                "doc_id": [f"d{i}" for i in range(n)],
                "text": ["t"] * n,
                "label": label,
                "labels": [[lab, "x"] for lab in label],
                "extra": [json.dumps({"pid": i + 100}) for i in range(n)],
            }
        ),
        docs / "part-0.parquet",
    )
    codes = [[i % 3, (i // 3) % 4] for i in range(n)]  # first code = label; 12 distinct IDs, 5 documents each
    suffix = [i // 12 for i in range(n)]
    ours = tmp_path / "ours"
    (ours / "table").mkdir(parents=True)
    pq.write_table(
        pa.table(
            {
                "doc_id": [f"d{i}" for i in range(n)],
                "codes": pa.array(codes, pa.list_(pa.int32())),
                "suffix": pa.array(suffix, pa.int32()),
                "sid": [f"{c}-{s}" for c, s in zip(codes, suffix)],
            }
        ),
        ours / "table" / "part-0.parquet",
    )
    (ours / "summary.json").write_text(json.dumps({"codebook_size": 8}))
    peer = tmp_path / "peer.index.json"  # keyed by the corpus field pid; codes unrelated to the label
    peer.write_text(json.dumps({str(i + 100): [f"<a_{i % 2}>", f"<b_{i}>"] for i in range(n)}))
    return tmp_path, ours, peer


def test_report_figures(setup):
    base, ours, peer = setup
    cfg = load_config(
        overrides=[
            f"output_dir={base}",
            "data.label_fields=[category, other]",
            f"report.tables=[ours={ours}, peer={peer}]",
            "report.key_field=pid",
        ]
    )
    out = id_report(cfg.report, RunContext.of(cfg), cfg.data.label_fields)
    r = json.loads(open(out["json"]).read())
    a, p = r["ours"], r["peer"]
    assert a["documents"] == p["documents"] == 60
    assert a["distinct_prefixes"] == [3, 12] and a["collision_rate"] == pytest.approx(1 - 12 / 60, abs=1e-4)
    assert a["largest_collision"] == 5 and a["max_suffix"] == 4 and a["documents_with_suffix"] == 48
    # the collision rate is exactly the share of documents with a non-zero suffix; here every document is in a group
    assert a["collision_rate"] == pytest.approx(a["documents_with_suffix"] / 60) and a["in_collision"] == 1.0
    assert [s["children_mean"] for s in a["split"]] == [3.0, 4.0]  # 3 first codes, 12 pairs
    assert a["split"][1]["cond_perplexity"] == pytest.approx(4.0, abs=0.01)
    assert p["split"][1]["cond_perplexity"] == pytest.approx(30.0, abs=0.01) and p["in_collision"] == 0.0
    assert a["code_usage"][0]["used"] == 3 and a["code_usage"][0]["usage"] == pytest.approx(3 / 8)
    assert a["code_usage"][0]["perplexity"] == pytest.approx(3.0)
    assert a["code_usage"][1]["perplexity"] == pytest.approx(4.0)
    assert a["cluster_sizes"]["full_codes"] == {"clusters": 12, "max": 5, "mean": 5.0, "median": 5.0, "singletons": 0}
    assert a["labels"]["category"]["ami"][0] == pytest.approx(1.0) and a["labels"]["category"]["labelled"] == 60
    assert abs(p["labels"]["category"]["ami"][0]) < 0.05 and p["collision_rate"] == 0.0
    assert p["codebook_size"] == 60 and "max_suffix" not in p
    assert r["ours"]["labels"]["other"]["nmi"][0] == 0.0  # one class against three codes: no information
    md = open(out["report"]).read()
    assert "| ours | 60 | 2 | 3 / 12 | 0.8000 |" in md and "Agreement with `category`" in md
    assert len(out["plots"]) == 4
    for png in out["plots"]:
        assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_report_cli_and_unknown_peer_keys(setup, capsys):
    base, ours, peer = setup
    assert main(["id-report", f"output_dir={base}", f"report.tables=[{ours}]"]) == 0
    assert os.path.exists(base / "report" / "ours-code-usage.png")
    cfg = load_config(overrides=[f"output_dir={base}", f"report.tables=[{peer}]", "report.key_field=nope"])
    with pytest.raises(ValueError, match="keys have no document"):
        id_report(cfg.report, RunContext.of(cfg), cfg.data.label_fields)


def test_unlabelled_documents_are_left_out_of_label_figures():
    from lmindexer.ids.table import IdTable
    from lmindexer.stages.id_report import figures

    codes = np.array([[0], [0], [1], [1], [1], [0]])
    t = IdTable(np.array([f"d{i}" for i in range(6)], dtype=object), codes, None, {"codebook_size": 2}, "t")
    labels = {"category": np.array(["a", "a", "b", "b", "", None], dtype=object)}
    scores = figures(t, labels)["labels"]["category"]
    assert scores["labelled"] == 4 and scores["classes"] == 2 and scores["ami"][0] == 1.0

"""RunLayout owns every path under output_dir: defaults, the per-section overrides, absolute local paths, URIs."""

import os

from lmindexer.config import load_config
from lmindexer.paths import RunLayout


def test_defaults_live_under_output_dir(tmp_path):
    lay = RunLayout.of(load_config(overrides=[f"output_dir={tmp_path}/run", "generator.task=rec"]))
    base = f"{tmp_path}/run"
    assert lay.corpus == f"{base}/corpus" and lay.docs == f"{base}/corpus/docs"
    assert (lay.backbone, lay.indexer, lay.ids, lay.report) == (
        f"{base}/backbone",
        f"{base}/indexer",
        f"{base}/ids",
        f"{base}/report",
    )
    assert lay.generator_ids == lay.ids and lay.generator == f"{base}/generator-rec-ids"
    assert lay.baseline_ids == f"{base}/ids-rkmeans" and lay.ray == f"{base}/ray" and lay.tune == f"{base}/tune"


def test_overrides_and_relative_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(
        overrides=[
            "output_dir=run",
            "data.output=s3://bucket/corpus",
            "generator.ids=run/ids-hkmeans",
            "baseline.method=hkmeans",
            "train.storage_path=gs://b/ray",
        ]
    )
    lay = RunLayout.of(cfg)
    assert lay.docs == "s3://bucket/corpus/docs" and lay.ray == "gs://b/ray"  # URIs untouched
    assert lay.backbone == os.path.join(str(tmp_path), "run", "backbone")  # local paths made absolute
    assert lay.generator_ids == os.path.join(str(tmp_path), "run", "ids-hkmeans")
    assert lay.generator.endswith("run/generator-retrieval-ids-hkmeans") and lay.baseline_ids.endswith("ids-hkmeans")

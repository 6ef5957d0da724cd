"""assign-ids on a real local Ray: exactly once, crash and re-run, incremental indexing, both collision strategies."""

import glob
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from conftest import ctrl_c_able, this_ray

from lmindexer.config import IndexerConfig, load_config
from lmindexer.ids.table_writer import unique_shuffle
from lmindexer.ids.unique import rebalance_group, sid, suffix_group
from lmindexer.models.indexer import SemanticIndexer
from lmindexer.paths import RunContext
from lmindexer.pipeline import assign
from lmindexer.runtime import PARTITION_ROWS, partitions_for
from lmindexer.stages.init_model import init_model
from lmindexer.stages.prepare import prepare


def test_suffixes_keep_old_ids_and_follow_doc_id_order():
    assert list(suffix_group(np.array(["b", "a", "c"]), np.array([-1, -1, -1]))) == [1, 0, 2]
    assert list(suffix_group(np.array(["z", "a", "q"]), np.array([0, -1, 1]))) == [0, 2, 1]
    assert sid([12, 7, 103], 0) == "12-7-103-0"


def test_rebalance_moves_to_the_next_free_code():
    ids = np.array(["a", "b", "c", "d"])
    cand = np.array([[3, 1, 2], [3, 2, 1], [3, 1, 0], [5, 3, 1]])
    score = np.array([[0.9, 0.5, 0.1], [0.8, 0.7, 0.1], [0.7, 0.6, 0.5], [0.95, 0.2, 0.1]])
    assert list(rebalance_group(ids, cand, score)) == [3, 2, 1, 5]
    assert list(rebalance_group(ids[:2], cand[:2], score[:2], taken=np.array([3, 2]))) == [1, 3]


@pytest.fixture(scope="module")
def indexed(ray_session, tmp_path_factory):
    """A 300-document demo corpus in 6 shards and an indexer (random codebooks: many collisions to resolve)."""
    base = tmp_path_factory.mktemp("assign")
    cfg = load_config("configs/quickstart.yaml", [f"output_dir={base}", "demo.num_docs=300", "data.rows_per_shard=50"])
    prepare(cfg.data, RunContext.of(cfg), cfg.demo)
    torch.manual_seed(0)  # the same random model and codebooks every run: some spread, so rebalancing has free codes
    backbone = init_model(cfg.model, RunContext.of(cfg))
    idx = SemanticIndexer.from_backbone(backbone, IndexerConfig(num_positions=2, codebook_size=4), 48)
    idx.state["positions_done"] = 2
    idx.save_pretrained(str(base / "indexer"))
    return base


def run_cfg(base, out, *extra):
    return load_config(
        "configs/quickstart.yaml", [f"output_dir={base}", f"assign.output={out}", "assign.files_per_round=6", *extra]
    )


def table(out):
    return pq.read_table(os.path.join(out, "table")).to_pandas()


def corpus_ids(base):
    return set(pq.read_table(os.path.join(base, "corpus", "docs")).column("doc_id").to_pylist())


def readme_snippet() -> str:
    text = open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read()
    return next(b for b in text.split("```python\n")[1:] if "SemanticIndexer.from_pretrained" in b).split("```")[0]


@pytest.fixture(scope="module")
def assigned(indexed, tmp_path_factory):
    """assign-ids once with suffixes, 6 shards in rounds of 4: (its output folder, its summary)."""
    out = tmp_path_factory.mktemp("assigned") / "ids"
    return out, assign(run_cfg(indexed, out, "assign.files_per_round=4"))


def test_the_readme_snippet_gives_the_id_table_codes(indexed, assigned):
    """The README's loading example, run as written on an indexer and its assign-ids table: same codes."""
    t = table(assigned[0])
    docs = pq.read_table(os.path.join(indexed, "corpus", "docs"), columns=["doc_id", "text"]).to_pylist()
    texts = {r["doc_id"]: r["text"] for r in docs}
    rows = t.head(20)
    code = readme_snippet().replace('"runs/quickstart/indexer"', repr(str(indexed / "indexer")))
    code = code.replace('["Acme kettle 1.7 l; stainless steel"]', "TEXTS")
    scope = {"TEXTS": [texts[d] for d in rows.doc_id]}
    exec(code, scope)  # noqa: S102 - the README's own example
    assert scope["codes"].tolist() == [list(c) for c in rows.codes]


def test_every_document_gets_exactly_one_unique_id_and_rebalance_shortens_ids(indexed, assigned, tmp_path):
    out, plain = assigned
    t = table(out)
    assert plain["documents_in"] == plain["ids_out"] == len(t) == 300
    assert set(t.doc_id) == corpus_ids(indexed) and t.sid.is_unique
    assert plain["documents_with_suffix"] > 0 and (t.codes.map(len) == 2).all()
    assert len(glob.glob(str(out / "_done" / "*.json"))) == 2  # 6 shards, 4 per round
    moved = assign(run_cfg(indexed, tmp_path / "moved", "assign.collisions=rebalance"))
    t = table(tmp_path / "moved")
    assert t.sid.is_unique and len(t) == 300
    assert moved["documents_with_suffix"] < plain["documents_with_suffix"]
    # the same on Ray Data (an actor pool for the codes, groupby across the cluster), as at scale, with the shuffle
    # the uniqueness pass takes over 100,000 codes: the same table
    on_ray = assign(
        run_cfg(
            indexed,
            tmp_path / "ray",
            "assign.collisions=rebalance",
            "ray.in_process_rows=0",
            "ray.unique_shuffle=shuffle_v2",
        )
    )
    assert on_ray["ids_out"] == 300 and on_ray["documents_with_suffix"] == moved["documents_with_suffix"]
    assert on_ray["largest_collision_group"] == moved["largest_collision_group"] == int(t.suffix.max()) + 1
    by_doc = lambda t: t.set_index("doc_id").sort_index()[["sid"]]  # noqa: E731
    assert by_doc(table(tmp_path / "ray")).equals(by_doc(t))


def test_unique_shuffle_is_shuffle_v2_above_100k_codes_unless_set():
    cfg = load_config(overrides=["ray.shuffle=sort_shuffle_push_based"])
    assert (
        unique_shuffle(cfg.ray, 100_000) == "sort_shuffle_push_based"
        and unique_shuffle(cfg.ray, 100_001) == "shuffle_v2"
    )
    cfg = load_config(overrides=["ray.unique_shuffle=hash_shuffle"])
    assert unique_shuffle(cfg.ray, 10) == unique_shuffle(cfg.ray, 10**7) == "hash_shuffle"


def test_partitions_grow_with_rows_past_partition_rows():
    """Two per CPU for small inputs; past that, no partition holds more than PARTITION_ROWS rows."""
    assert partitions_for(4, 0) == partitions_for(4, 100_000) == 8 and partitions_for(0.5) == 2
    for rows in (400_001, 1_000_000, 10**7):
        n = partitions_for(4, rows)
        assert -(-rows // n) <= PARTITION_ROWS < -(-rows // (n - 1))


def test_cpu_actors_take_their_share_of_the_cores(ray_session):
    """A CPU inference actor reserves half a CPU, for which Ray would give torch one thread: it runs with
    inference.threads, by default the machine's cores over the pool's most actors."""
    import ray.data

    from lmindexer.raydata import actor_pool, actor_threads

    class Threads:  # defined here, so that Ray's workers get it by value (they cannot import a test module)
        def __call__(self, batch: dict) -> dict:
            import torch

            return {"threads": np.full(len(batch["id"]), torch.get_num_threads())}

    cores = os.cpu_count() or 1
    cfg = load_config(overrides=["inference.actors=1"])
    ds = ray.data.range(8).map_batches(Threads, **{**actor_pool(RunContext.of(cfg), gpu=False), "batch_size": 8})
    assert set(ds.to_pandas()["threads"]) == {actor_threads(cfg.inference, cores)} == {cores}
    assert actor_threads(load_config(overrides=["inference.actors=2"]).inference, 16) == 8
    assert actor_threads(load_config(overrides=["inference.actors=4"]).inference, 2) == 1
    assert actor_threads(load_config(overrides=["inference.threads=3"]).inference, 2) == 3


def test_incremental_indexing_keeps_old_ids(indexed, tmp_path):
    small = tmp_path / "small"
    cfg = load_config("configs/quickstart.yaml", [f"output_dir={small}", "demo.num_docs=200"])
    prepare(cfg.data, RunContext.of(cfg), cfg.demo)
    old_cfg = run_cfg(indexed, tmp_path / "old", f"data.output={small}/corpus")
    assign(old_cfg)
    old = table(tmp_path / "old").set_index("doc_id")
    summary = assign(run_cfg(indexed, tmp_path / "new", f"assign.existing={tmp_path / 'old'}"))
    new = table(tmp_path / "new").set_index("doc_id")
    assert summary["existing_kept"] == 200 and len(new) == 300 and new.sid.is_unique
    assert (new.loc[old.index, "sid"] == old.sid).all()
    # Ray Data's union and groupby by doc_id keep the same IDs
    existing = f"assign.existing={tmp_path / 'old'}"
    assert assign(run_cfg(indexed, tmp_path / "ray", existing, "ray.in_process_rows=0"))["existing_kept"] == 200
    assert table(tmp_path / "ray").set_index("doc_id").sort_index().sid.equals(new.sort_index().sid)


@pytest.mark.slow
def test_crash_and_rerun_redoes_no_finished_shard(indexed, tmp_path):
    out = tmp_path / "ids"
    args = [
        sys.executable,
        "-m",
        "lmindexer.cli",
        "assign-ids",
        "--config",
        "configs/quickstart.yaml",
        f"output_dir={indexed}",
        f"assign.output={out}",
        "assign.files_per_round=3",  # 6 shards in 2 rounds: stopped after the first
        "ray.in_process_rows=0",  # rounds on Ray Data, slow enough to be stopped halfway
    ]
    env = this_ray()
    first = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=ctrl_c_able, env=env
    )
    end = time.time() + 300
    while not glob.glob(f"{out}/_done/*.json"):
        assert time.time() < end and first.poll() is None, "the first run did not commit a round"
        time.sleep(0.2)
    first.send_signal(signal.SIGINT)  # Ctrl-C
    log1, _ = first.communicate(timeout=60)
    assert first.returncode == 130 and "assign-ids interrupted" in log1, log1[-3000:]
    markers = {m: os.path.getmtime(m) for m in glob.glob(f"{out}/_done/*.json")}
    assert len(markers) == 1 and not os.path.exists(out / "table")
    moved = tmp_path / "moved"  # the same run reached by another path (a moved folder, a link) still resumes
    moved.symlink_to(indexed, target_is_directory=True)
    args = [f"output_dir={moved}" if a.startswith("output_dir=") else a for a in args]
    second = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600, env=env)
    assert second.returncode == 0, second.stdout[-4000:]
    assert "3 already done" in second.stdout  # the committed round's shards
    assert all(os.path.getmtime(m) == t for m, t in markers.items())
    t = table(out)
    assert len(t) == 300 and t.doc_id.is_unique and t.sid.is_unique and set(t.doc_id) == corpus_ids(indexed)

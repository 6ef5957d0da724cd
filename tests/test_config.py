import pytest

from lmindexer.config import Config, ConfigError, describe, from_dict, load_config, to_dict


def test_defaults_come_from_the_dataclasses():
    cfg = load_config()
    assert cfg == Config()
    assert cfg.indexer.num_positions == 3


def test_yaml_then_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("output_dir: out\nindexer:\n  codebook_size: 16\ndata:\n  text_fields: [a, b]\n")
    cfg = load_config(f, ["indexer.codebook_size=8", "train.zero_stage=3", "indexer.lr=1e-4", "data.label_fields=x,y"])
    assert cfg.output_dir == "out"
    assert cfg.indexer.codebook_size == 8
    assert cfg.train.zero_stage == 3
    assert cfg.indexer.lr == pytest.approx(1e-4)
    assert cfg.data.text_fields == ["a", "b"]
    assert cfg.data.label_fields == ["x", "y"]


@pytest.mark.parametrize(
    "override,key",
    [
        ("indexer.codebok_size=3", "indexer.codebok_size"),
        ("nope=1", "nope"),
        ("indexer.codebook_size=abc", "indexer.codebook_size"),
        ("train.use_gpu=3", "train.use_gpu"),
        ("train.engine=horovod", "train.engine"),
        ("indexer=5", "indexer"),
    ],
)
def test_bad_keys_and_types_name_the_key(override, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        load_config(overrides=[override])


def test_round_trip_and_help_lists_every_option():
    cfg = load_config(overrides=["seed=7"])
    assert from_dict(to_dict(cfg)) == cfg
    text = describe(["", "indexer"])
    for name in to_dict(cfg)["indexer"]:
        assert f"indexer.{name}=" in text
    assert "seed=0" in text


def test_output_dir_uri_is_refused_with_where_uris_go():
    with pytest.raises(ConfigError, match="indexer.output"):
        load_config(overrides=["output_dir=s3://bucket/run"])


def test_an_unknown_key_suggests_the_near_one():
    with pytest.raises(ConfigError, match=r"did you mean 'generator.epochs'\?"):
        load_config(overrides=["generator.epoch=3"])
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["generator.zzzz=3"])
    assert "did you mean" not in str(err.value)


def test_a_moved_key_names_its_new_place():
    with pytest.raises(ConfigError, match=r"'train.inference_actors' is now 'inference.actors'"):
        load_config(overrides=["train.inference_actors=3"])
    assert load_config(overrides=["inference.actors=3"]).inference.actors == 3
    with pytest.raises(ConfigError, match=r"'generator.max_eval' is now 'evaluate.max_queries'"):
        load_config(overrides=["generator.max_eval=3"])


def test_ray_data_settings_reach_this_process():
    """The shuffle and the parquet reader the config names are what Ray Data in this process (driver or Tune trial)
    then uses; Ray 2.60's own defaults are the actor-based shuffle and the V2 reader."""
    import ray.data
    from ray.data.context import ShuffleStrategy

    from lmindexer.runtime import data_context

    context = ray.data.DataContext.get_current()
    saved = context.shuffle_strategy, context.use_datasource_v2
    try:
        data_context(load_config().ray)
        assert context.shuffle_strategy == ShuffleStrategy.SORT_SHUFFLE_PULL_BASED and not context.use_datasource_v2
        data_context(load_config(overrides=["ray.parquet_v2=true", "ray.shuffle=hash_shuffle"]).ray)
        assert context.shuffle_strategy == ShuffleStrategy.HASH_SHUFFLE and context.use_datasource_v2
    finally:
        context.shuffle_strategy, context.use_datasource_v2 = saved


def test_the_configuration_reference_is_current():
    """docs/configuration.md is generated from the config's own help: regenerate it after changing an option."""
    from pathlib import Path

    from lmindexer.config import reference_markdown

    doc = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
    assert doc.read_text() == reference_markdown(), "run: .venv/bin/python -m lmindexer.config > docs/configuration.md"


def test_progress_reports_rate_and_time_left_at_most_every_interval(caplog):
    import logging

    from lmindexer.runtime import Progress

    now = [0.0]
    p = Progress("codes", 1000, every=30, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="lmindexer"):
        now[0] = 10
        p.update(100)  # 10 s in: not yet
        now[0] = 40
        p.update(300)  # 40 s in: 400 of 1000 at 10/s, 60 s left
        now[0] = 50
        p.update(600)  # the end is always reported
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "codes: 400 of 1,000 (40%), 10/s, 60 s left",
        "codes: 1,000 of 1,000 (100%), 20/s, 0 s left",
    ]


def test_rows_written_reports_a_write_in_progress_from_the_files_footers(tmp_path, caplog):
    import logging
    import time

    import pyarrow as pa
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    from lmindexer.raydata import rows_written, written_rows
    from lmindexer.runtime import Progress

    fs, out = pafs.LocalFileSystem(), str(tmp_path / "out")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "partial.parquet").write_bytes(b"PAR1 not finished")  # a file still being written
    assert written_rows(fs, out) == 0 and written_rows(fs, str(tmp_path / "missing")) == 0
    with caplog.at_level(logging.INFO, logger="lmindexer"):
        with rows_written(Progress("codes (Ray Data)", 300, every=0.2), fs, out):
            for i in range(3):  # three blocks of 100 rows, as a write's tasks finish them
                pq.write_table(pa.table({"x": list(range(100))}), f"{out}/block-{i}.parquet")
                time.sleep(0.3)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("codes (Ray Data)")]
    assert len(lines) >= 2 and "of 300" in lines[0] and lines[-1].startswith("codes (Ray Data): 300 of 300 (100%)")
    assert written_rows(fs, out) == 300


def test_training_progress_lines_give_the_rate_and_once_an_epoch_is_known_the_time_left():
    from lmindexer.train.loop import time_left

    assert time_left(40, 4.0, 0, 3) == ", 10.0 steps/s"  # the first epoch: its length is not known yet
    assert time_left(40, 4.0, 100, 2) == ", 10.0 steps/s, 26 s left"  # 60 steps here and 200 in two more epochs


def test_ablation_switches_are_listed_apart_as_experimental():
    from lmindexer.config import describe, reference_markdown

    indexer = reference_markdown().split("## indexer")[1].split("\n## ")[0]
    users, experimental = indexer.split("**Experimental**")
    assert "`indexer.codebook_size`" in users and "`indexer.prefix_similarity`" not in users
    assert "`indexer.prefix_similarity`" in experimental and "`indexer.codebook_size`" not in experimental
    assert "[experimental] contrastive=prefix: cos" in describe(["indexer"])

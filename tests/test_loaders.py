from conftest import shared_data

from lmindexer.config import DemoConfig
from lmindexer.data.generator_data import read_qrels, read_queries, read_sequences
from lmindexer.data.synthetic import make_demo, write_demo


def test_demo_is_deterministic_and_loads_back(tmp_path):
    cfg = DemoConfig(num_docs=200, num_users=20, num_queries=30)
    assert make_demo(cfg, seed=1) == make_demo(cfg, seed=1)
    assert make_demo(cfg, seed=1) != make_demo(cfg, seed=2)
    write_demo(str(tmp_path), cfg, seed=1)
    assert len(read_queries(str(tmp_path))) == 30
    train, test = read_qrels(str(tmp_path), "train"), read_qrels(str(tmp_path), "test")
    assert len(train) + len(test) == 30
    seqs = read_sequences(str(tmp_path / "sequences.txt"))
    assert len(seqs) == 20 and all(len(s) >= 5 for s in seqs.values())


def test_scifact_queries_and_qrels():
    folder = str(shared_data("scifact/derived_beir"))
    assert len(read_queries(folder)) == 1109
    assert sum(map(len, read_qrels(folder, "test").values())) == 339


def test_beauty_sequences():
    seqs = read_sequences(str(shared_data("amazon_beauty/original/CIKM2020-S3Rec/data/Beauty.txt")))
    assert len(seqs) == 22363 and sum(map(len, seqs.values())) == 198502

"""Remote storage for real: an S3-compatible server (moto) on loopback holds the input corpus, the prepared corpus, Ray
Train's checkpoints, the indexer folder and the ID table; every stage reads and writes there through pyarrow."""

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from lmindexer import storage
from lmindexer.config import load_config
from lmindexer.data.synthetic import write_demo
from lmindexer.paths import RunContext
from lmindexer.pipeline import assign, learn
from lmindexer.stages.prepare import prepare

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def s3():
    """(endpoint, filesystem) of a moto S3 server with an empty bucket `lmi`; credentials come from conftest."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"127.0.0.1:{port}"
    fs = pafs.S3FileSystem(endpoint_override=endpoint, scheme="http", region="us-east-1", allow_bucket_creation=True)
    deadline = time.time() + 60
    while True:
        try:
            fs.create_dir("lmi")
            break
        except OSError:
            if time.time() > deadline:
                server.kill()
                raise
            time.sleep(0.5)
    yield endpoint, fs
    server.terminate()
    server.wait(timeout=30)


def test_local_folder_and_put_folder_round_trip(s3, tmp_path):
    endpoint, fs = s3
    cfg = load_config(
        overrides=[f"storage.s3_endpoint={endpoint}", "storage.s3_scheme=http", "storage.s3_region=us-east-1"]
    ).storage
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    storage.put_folder(str(tmp_path / "model"), "s3://lmi/round-trip/model", cfg)
    local = storage.local_folder("s3://lmi/round-trip/model", cfg)
    assert (Path(local) / "config.json").read_text() == "{}"
    assert storage.local_folder("s3://lmi/round-trip/model", cfg) == local  # cached
    (tmp_path / "model" / "config.json").write_text('{"retrained": true}')
    storage.put_folder(str(tmp_path / "model"), "s3://lmi/round-trip/model", cfg)  # rewritten at the same URI
    assert (
        Path(storage.local_folder("s3://lmi/round-trip/model", cfg)) / "config.json"
    ).read_text() == '{"retrained": true}'
    assert storage.local_folder(str(tmp_path), cfg) == str(tmp_path)  # local paths untouched
    with pytest.raises(FileNotFoundError, match="model folder not found"):
        storage.local_folder("s3://lmi/no-such-model", cfg)


def test_pipeline_on_s3(ray_session, s3, tmp_path):
    endpoint, fs = s3
    overrides = [
        f"output_dir={tmp_path}",
        f"storage.s3_endpoint={endpoint}",
        "storage.s3_scheme=http",
        "storage.s3_region=us-east-1",
        "data.input=s3://lmi/raw",
        "data.output=s3://lmi/corpus",
        "train.storage_path=s3://lmi/ray",
        "indexer.output=s3://lmi/indexer",
        "assign.output=s3://lmi/ids",
        "ray.in_process_rows=0",  # Ray Data reads and writes the bucket, as for a corpus too big for one process
        "demo.num_docs=150",
        "model.vocab_size=500",
        "model.max_length=32",
        "indexer.num_positions=1",
        "indexer.codebook_size=4",
        "indexer.continuous_epochs=0",
        "indexer.joint_epochs=1",
        "indexer.batch_size=16",
        "train.log_every_steps=0",
        "train.checkpoint_every_steps=2",
    ]
    cfg = load_config("configs/quickstart.yaml", overrides)
    write_demo(str(tmp_path / "raw"), cfg.demo)  # a BEIR folder, uploaded as the input
    storage.put_folder(str(tmp_path / "raw"), "s3://lmi/raw", cfg.storage)

    assert prepare(cfg.data, RunContext.of(cfg), cfg.demo)["written"] == 150
    assert fs.get_file_info(pafs.FileSelector("lmi/corpus/docs")), "no prepared shards on S3"
    summary = learn(cfg)
    assert summary["indexer"] == "s3://lmi/indexer"
    assert fs.get_file_info("lmi/indexer/indexer.json").type == pafs.FileType.File
    runs = [i.path for i in fs.get_file_info(pafs.FileSelector("lmi/ray", recursive=True))]
    assert any("learn-ids/checkpoint_" in p for p in runs), runs[:20]

    shutil.rmtree(tmp_path / "learn_ids")  # assign-ids must read the indexer from S3, not from the local copy
    ids = assign(cfg)
    assert ids["documents_in"] == ids["ids_out"] == 150
    table = pq.read_table("lmi/ids/table", filesystem=fs)
    assert table.num_rows == 150 and len(set(table.column("sid").to_pylist())) == 150

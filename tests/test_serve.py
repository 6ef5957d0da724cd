"""`lmindexer serve` on a real local Ray Serve: the endpoints, every kind of bad request (a 4xx, and the server goes
on), concurrent assigns that never share an ID, a restart and a killed replica that lose no acknowledged ID."""

import json
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
from ray import serve
from test_service import TEXTS, run  # noqa: F401 - the run fixture: an indexer and its ID table

from lmindexer.config import ModelConfig, load_config
from lmindexer.ids.table import read_id_table
from lmindexer.ids.unique import sid
from lmindexer.models.backbone import load_backbone
from lmindexer.models.generator import build_generator
from lmindexer.models.seqrec import SeqRec, SeqRecConfig, item_rows
from lmindexer.serve import APP, start


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url: str, path: str, body=None, raw: bytes | None = None, method: str | None = None) -> tuple[int, dict]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url + path, data=data, method=method or ("POST" if data is not None else "GET"))
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture(scope="module")
def server(run, tmp_path_factory, ray_session):  # noqa: F811
    indexer, ids = run
    root = str(tmp_path_factory.mktemp("rec"))
    codes = np.array([[i % 4, i // 4 % 4] for i in range(40)])
    rows, count = item_rows("prefixes", codes, np.zeros(40, dtype=np.int64), 40)
    model = SeqRec(SeqRecConfig(items=40, rows=count, compose="prefixes", dim=8, layers=1, heads=1, max_len=8), rows)
    model.save_pretrained(root)
    pq.write_table(pa.table({"doc_id": [f"d{i}" for i in range(40)]}), f"{root}/items.parquet")
    t5, tok = load_backbone(ModelConfig(vocab_size=200), TEXTS)  # an untrained retriever over the same ID table
    t5.save_pretrained(f"{root}/t5")
    tok.save_pretrained(f"{root}/t5")
    spec = read_id_table(ids).spec
    build_generator(f"{root}/t5", spec, f"{root}/retriever", meta={"task": "retrieval", "ids": ids})
    cfg = load_config(
        overrides=[
            f"output_dir={ids.rsplit('/', 1)[0]}",
            f"serve.port={free_port()}",
            f"serve.generator={root}",
            f"serve.retriever={root}/retriever",
            "serve.max_batch=4",
            "serve.max_k=20",
            "data.max_text_chars=60",
        ]
    )
    url = start(cfg)
    yield cfg, url
    serve.shutdown()


def test_endpoints_answer_and_new_ids_are_persisted(server):
    cfg, url = server
    assert call(url, "/health") == (200, {"status": "ok"})
    status, about = call(url, "/describe")
    assert status == 200 and about["ids"]["num_positions"] == 2 and about["recommend"]["items"] == 40
    before = len(read_id_table(about["ids"]["table"]).doc_ids)
    status, got = call(url, "/assign", {"documents": [{"doc_id": "s-1", "text": TEXTS[45]}, {"doc_id": "d1"}]})
    assert status == 200 and got["ids"][0]["new"] and not got["ids"][1]["new"]
    assert len(read_id_table(about["ids"]["table"]).doc_ids) == before + 1  # on disk before the answer came
    status, rec = call(url, "/recommend", {"history": ["d1", "d2"], "k": 5})
    assert status == 200 and len(rec["items"]) == 5 and not {"d1", "d2"} & set(rec["items"])
    status, found = call(url, "/retrieve", {"query": TEXTS[3], "k": 5})
    table = read_id_table(about["ids"]["table"])
    sid_of = {d: sid(c, x) for d, c, x in zip(table.doc_ids, table.codes.tolist(), table.suffix.tolist())}
    assert status == 200 and len({d["doc_id"] for d in found["documents"]}) == 5
    assert all(sid_of[d["doc_id"]] == d["sid"] for d in found["documents"])  # only documents of the table
    assert about["retrieve"]["documents"] == 40


@pytest.mark.parametrize(
    "path, body, raw, method, code, reason",
    [
        ("/assign", None, b"{not json", None, 400, "not JSON"),
        ("/assign", [1, 2], None, None, 400, "JSON object"),
        ("/assign", {"docs": []}, None, None, 400, "non-empty list"),
        ("/assign", {"documents": [{"doc_id": "s-2", "text": ""}]}, None, None, 400, "non-empty string"),
        ("/assign", {"documents": [{"doc_id": "s-3", "text": "w " * 40}]}, None, None, 400, "at most 60"),
        ("/assign", {"documents": [{"doc_id": f"s{i}", "text": "a"} for i in range(5)]}, None, None, 400, "at most 4"),
        ("/retrieve", {"q": "kettle"}, None, None, 400, "query: a non-empty string"),
        ("/retrieve", {"query": "w " * 40}, None, None, 400, "at most 60"),
        ("/retrieve", {"query": "kettle", "k": 0}, None, None, 400, "k: an integer"),
        ("/recommend", {"history": ["d1", "nope"]}, None, None, 400, "unknown item id"),
        ("/recommend", {"history": ["d1"], "k": 0}, None, None, 400, "k: an integer"),
        ("/recommend", {"history": ["d1"], "k": 21}, None, None, 400, "k: an integer"),
        ("/nothing", None, None, None, 404, "no endpoint"),
        ("/assign", None, None, "GET", 405, "takes POST"),
    ],
)
def test_bad_requests_get_a_4xx_and_the_server_goes_on(server, path, body, raw, method, code, reason):
    _, url = server
    status, answer = call(url, path, body, raw, method)
    assert status == code and reason in answer["error"], answer
    assert call(url, "/assign", {"documents": [{"doc_id": "d0"}]})[0] == 200


def test_concurrent_assigns_never_share_an_id_and_survive_a_restart_and_a_killed_replica(server):
    cfg, url = server
    docs = [{"doc_id": f"c-{i}", "text": TEXTS[50 + i % 3]} for i in range(24)]  # three texts: colliding codes
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda d: call(url, "/assign", {"documents": [d]}), docs))
    assert all(s == 200 for s, _ in answers)
    sids = {a["ids"][0]["doc_id"]: a["ids"][0]["sid"] for _, a in answers}
    assert len(set(sids.values())) == 24
    replica = [a for a in ray.util.list_named_actors(all_namespaces=True) if "Server" in a["name"]]
    assert replica, "no replica actor found"
    ray.kill(ray.get_actor(replica[0]["name"], namespace=replica[0]["namespace"]), no_restart=False)
    deadline, status = time.time() + 120, 0
    while time.time() < deadline:  # Serve replaces the replica
        try:
            status, again = call(url, "/assign", {"documents": [{"doc_id": d} for d in list(sids)[:4]]})
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            status = 0
        if status == 200:
            break
        time.sleep(1)
    assert status == 200 and {a["doc_id"]: a["sid"] for a in again["ids"]} == {d: sids[d] for d in list(sids)[:4]}
    serve.delete(APP)  # a restart of the application: the IDs come back from the table
    url = start(cfg)
    status, again = call(url, "/assign", {"documents": [{"doc_id": d} for d in list(sids)[-4:]]})
    assert status == 200 and all(not a["new"] and a["sid"] == sids[a["doc_id"]] for a in again["ids"])


def test_batched_retrieval_answers_each_query_as_alone(server):
    """What /retrieve batches (queries of different lengths, padded together) ranks each query as it would alone; a
    bad request in the batch gets its own error and the others their answers."""
    from lmindexer.service import RequestError, RetrieveService

    cfg, _ = server
    service = RetrieveService.load(cfg.serve.retriever, max_k=20, max_query_chars=60)
    queries = [TEXTS[i] if i % 2 else TEXTS[i].split(" colour")[0] for i in range(8)]
    batch = service.retrieve_many([{"query": q, "k": 4} for q in queries] + [{"query": ""}, {"query": "a", "k": 7}])
    assert isinstance(batch[8], RequestError) and len(batch[9]) == 7
    for q, got in zip(queries, batch):
        alone = service.retrieve(q, 4)
        assert [a["sid"] for a in alone] == [b["sid"] for b in got]
        assert max(abs(a["score"] - b["score"]) for a, b in zip(alone, got)) < 1e-3

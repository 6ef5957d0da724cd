"""`lmindexer serve`: a finished run's IDs and recommender as HTTP JSON endpoints on Ray Serve.

A thin layer over lmindexer.service (the same calls from Python); each replica loads the models once.

    POST /assign     {"documents": [{"doc_id": "...", "text": "..."}]} -> {"ids": [{"doc_id", "sid", "codes",
                     "suffix", "new"}]}: known documents keep their ID; new ones get one, written to the run's table
                     before the answer. Concurrent requests are batched into one indexer pass (serve.batch_wait_s).
    POST /retrieve   {"query": "...", "k": 10} -> {"documents": [{"doc_id", "sid", "score"}]} (with serve.retriever):
                     beam search under the trie of the table, so every answer is a document with an ID; concurrent
                     queries with the same k decode as one batch
    POST /recommend  {"history": ["item id", ...], "k": 10} -> {"items": [...]} (with serve.generator)
    GET  /health     {"status": "ok"}
    GET  /describe   the loaded run: ID shape, documents with an ID, limits, the recommender's items

A bad request gets a 4xx with {"error": what to change}, and the server goes on: malformed JSON, a body that is not
an object, missing or empty fields, a text or query over data.max_text_chars, more than serve.max_batch documents,
unknown item ids, k out of range.
"""

from __future__ import annotations

import json
import logging
import os

from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

from .config import Config
from .paths import RunLayout
from .runtime import ensure_ray, quiet
from .service import IdService, RecService, RequestError, RetrieveService

log = logging.getLogger("lmindexer.serve")
APP = "lmindexer"


@serve.deployment(ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=64)
class Server:
    def __init__(self, indexer: str, ids: str, generator: str, retriever: str, limits: dict):
        self.ids = IdService.load(indexer, ids, max_text_chars=limits["max_text_chars"], max_batch=limits["max_batch"])
        self.rec = RecService.load(generator, max_k=limits["max_k"]) if generator else None
        self.search = (
            RetrieveService.load(retriever, max_k=limits["max_k"], max_query_chars=limits["max_text_chars"])
            if retriever
            else None
        )
        self._assign.set_batch_wait_timeout_s(limits["batch_wait_s"])
        self._retrieve.set_batch_wait_timeout_s(limits["batch_wait_s"])

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def _assign(self, requests: list) -> list:
        return self.ids.assign_many(requests)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def _retrieve(self, requests: list) -> list:
        return self.search.retrieve_many(requests)

    async def __call__(self, request: Request) -> JSONResponse:
        path = request.url.path.rstrip("/") or "/"
        try:
            if path == "/health":
                return JSONResponse({"status": "ok"})
            if path == "/describe":
                rec = self.rec.describe() if self.rec else None
                search = self.search.describe() if self.search else None
                return JSONResponse({"ids": self.ids.describe(), "recommend": rec, "retrieve": search})
            if path not in ("/assign", "/recommend", "/retrieve"):
                return JSONResponse(
                    {"error": f"no endpoint {path}: /assign, /retrieve, /recommend, /health, /describe"}, 404
                )
            if request.method != "POST":
                return JSONResponse({"error": f"{path} takes POST with a JSON body"}, 405)
            body = await _json(request)
            if path == "/assign":
                got = await self._assign(body.get("documents"))
                if isinstance(got, RequestError):
                    raise got
                return JSONResponse({"ids": got})
            if path == "/retrieve":
                if self.search is None:
                    return JSONResponse({"error": "this server has no retriever (serve.retriever)"}, 404)
                got = await self._retrieve(body)
                if isinstance(got, RequestError):
                    raise got
                return JSONResponse({"documents": got})
            if self.rec is None:
                return JSONResponse({"error": "this server has no recommender (serve.generator)"}, 404)
            return JSONResponse({"items": self.rec.recommend(body.get("history"), body.get("k", 10))})
        except RequestError as e:
            return JSONResponse({"error": str(e)}, 400)


async def _json(request: Request) -> dict:
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError) as e:
        raise RequestError(f"the body is not JSON ({e})") from None
    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object")
    return body


def application(cfg: Config):
    """The Serve application over cfg's run: its indexer and ID table, and serve.generator if set."""
    layout, s = RunLayout.of(cfg), cfg.serve
    for what, path in (("indexer", layout.indexer), ("ID table", os.path.join(layout.ids, "table"))):
        if not os.path.exists(path):
            raise FileNotFoundError(f"no {what} at {path}: run learn-ids and assign-ids first (or `lmindexer run`)")
    for key in ("generator", "retriever"):
        if getattr(s, key) and not os.path.exists(getattr(s, key)):
            raise FileNotFoundError(f"serve.{key}={getattr(s, key)} does not exist")
    limits = {
        "max_text_chars": cfg.data.max_text_chars,
        "max_batch": s.max_batch,
        "max_k": s.max_k,
        "batch_wait_s": s.batch_wait_s,
    }
    if s.max_replicas > s.min_replicas:
        scaling = {"autoscaling_config": {"min_replicas": s.min_replicas, "max_replicas": s.max_replicas}}
    else:
        scaling = {"num_replicas": s.min_replicas}
    return Server.options(**scaling).bind(layout.indexer, layout.ids, s.generator, s.retriever, limits)


def start(cfg: Config) -> str:
    """Start the server on Ray Serve (not blocking) and return its base URL."""
    ensure_ray(cfg.ray)
    # a quiet start, as every command's (--verbose keeps Serve's own INFO lines: proxy, controller, replicas)
    logs = {"enable_access_log": cfg.serve.access_log, "log_level": "WARNING" if quiet() else "INFO"}
    if quiet():
        logging.getLogger("ray.serve").setLevel(logging.WARNING)
    serve.start(http_options={"host": cfg.serve.host, "port": cfg.serve.port}, logging_config=logs)
    serve.run(application(cfg), name=APP, route_prefix="/", blocking=False, logging_config=logs)
    url = f"http://{cfg.serve.host}:{cfg.serve.port}"
    log.info("serve: %s ready at %s (assign, retrieve, recommend, health, describe)", RunLayout.of(cfg).ids, url)
    return url


def serve_forever(cfg: Config) -> dict:
    """`lmindexer serve`: start, then wait until Ctrl-C, which shuts the application down."""
    import time

    url = start(cfg)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        serve.delete(APP)
    return {"url": url}

"""Cluster use for real: cluster.yaml against the launcher schema Ray ships, the KubeRay RayJob against our own code,
and a two-node Ray cluster on this machine (`ray start --head` + `ray start --address`) that runs the whole pipeline
through `ray job submit` and reports a failing job as FAILED with its cause."""

import copy
import os
import re
import secrets
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import jsonschema
import psutil
import pyarrow.parquet as pq
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from lmindexer.config import load_config

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_cluster_yaml_passes_the_launcher_schema():
    with open(ROOT / "cluster.yaml") as f:
        config = yaml.safe_load(f)
    validate_config(prepare_config(copy.deepcopy(config)))
    nodes = config["available_node_types"]
    assert "GPU" not in nodes[config["head_node_type"]]["resources"]
    gpu = [n for n in nodes.values() if n["resources"].get("GPU")]
    assert gpu and all(n["min_workers"] == 0 and n["max_workers"] > 0 for n in gpu)  # autoscale from zero
    assert config["idle_timeout_minutes"] > 0
    assert any("pip install" in c and "lmindexer" in c for c in config["setup_commands"])
    assert any("--dashboard-port=8265" in c for c in config["head_start_ray_commands"])
    broken = copy.deepcopy(config)
    broken["available_node_types"]["gpu-worker"]["resources"]["GPU"] = 0.5  # Ray wants whole numbers here
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(broken))


def test_kuberay_rayjob_runs_our_entry_point_and_config():
    with open(ROOT / "deploy" / "kuberay-rayjob.yaml") as f:
        job = yaml.safe_load(f)
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[0] == "python" and (ROOT / argv[1]).is_file() and argv[2] == "--config"
    cfg = load_config(ROOT / argv[3], argv[4:])  # every override is a real, well-typed key
    assert cfg.train.use_gpu and cfg.train.num_workers > 1
    spec = job["spec"]["rayClusterSpec"]
    assert spec["rayVersion"] == ray.__version__
    images = [
        c["image"]
        for g in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
        for c in g["template"]["spec"]["containers"]
    ]
    assert all(f":{ray.__version__}-" in image for image in images)
    gpu = spec["workerGroupSpecs"][0]
    assert gpu["minReplicas"] == 0 and spec["enableInTreeAutoscaling"]
    assert gpu["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_cli(*args: str, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "ray"), *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def cluster():
    """A head and a second node on loopback, in their own temp folder, with token authentication (every node and
    CLI call carries the cluster's token); stopped by the PIDs they started."""
    temp = tempfile.mkdtemp(prefix="lmi-ray-", dir="/tmp")  # short: Ray's socket paths live under it
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
    }
    env.pop("RAY_ADDRESS", None)
    port, dashboard = free_port(), free_port()
    head = ray_cli(
        "start",
        "--head",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        "--num-cpus=2",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard}",
        f"--temp-dir={temp}",
        f"--ray-client-server-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        "--include-dashboard=true",
        env=env,
    )
    assert head.returncode == 0, head.stdout + head.stderr
    try:
        # its own temp folder too: two nodes on one machine must not share (and clean up) each other's
        # unpacked working_dir
        node = ray_cli(
            "start",
            f"--address=127.0.0.1:{port}",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=2",
            f"--temp-dir={temp}-node2",
            f"--dashboard-agent-listen-port={free_port()}",
            env=env,
        )
        assert node.returncode == 0, node.stdout + node.stderr
        yield {"address": f"http://127.0.0.1:{dashboard}", "env": env, "gcs": f"127.0.0.1:{port}"}
    finally:
        stop_cluster(temp)


def stop_cluster(temp: str) -> None:
    """Every process whose command line names this cluster's temp folder or GCS, and their children."""
    ours = [p for p in psutil.process_iter(["cmdline"]) if temp in " ".join(p.info["cmdline"] or [])]
    procs = {p.pid: p for p in ours}
    for p in ours:
        try:
            procs.update({c.pid: c for c in p.children(recursive=True)})
        except psutil.NoSuchProcess:
            pass
    for p in procs.values():
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    # most end at once; a Ray worker that is still importing ignores SIGTERM, and the test is over: 3 s, then kill
    _, alive = psutil.wait_procs(list(procs.values()), timeout=3)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


def submit(cluster: dict, job_id: str, *entrypoint: str, timeout: float = 900) -> subprocess.CompletedProcess:
    runtime_env = '{"excludes": [".venv", ".whl", ".git", "runs", "__pycache__"]}'
    return ray_cli(
        "job",
        "submit",
        f"--address={cluster['address']}",
        f"--submission-id={job_id}",
        "--working-dir=.",
        f"--runtime-env-json={runtime_env}",
        "--",
        *entrypoint,
        env=cluster["env"],
        timeout=timeout,
    )


def status(cluster: dict, job_id: str) -> str:
    """The job's state as `ray job status` words it ("Job 'x' succeeded", "... failed"), colour codes removed."""
    out = ray_cli("job", "status", f"--address={cluster['address']}", job_id, env=cluster["env"])
    return re.sub(r"\x1b\[[0-9;]*m", "", out.stdout + out.stderr)


@pytest.mark.slow
def test_whole_pipeline_through_ray_job_submit_on_two_nodes(cluster, tmp_path):
    deadline = time.time() + 60
    while (nodes := ray_cli("status", f"--address={cluster['gcs']}", env=cluster["env"]).stdout).count("node_") < 2:
        assert time.time() < deadline, nodes  # the second node never joined
        time.sleep(2)
    out = tmp_path / "run"
    job = submit(
        cluster, "lmi-pipeline", "python", "jobs/pipeline.py", "--config", "configs/ci-tiny.yaml", f"output_dir={out}"
    )
    assert job.returncode == 0, (job.stdout + job.stderr)[-5000:]
    assert "Job 'lmi-pipeline' succeeded" in status(cluster, "lmi-pipeline")
    assert "200 documents in, 200 IDs out" in job.stdout
    table = pq.read_table(out / "ids" / "table")
    assert table.num_rows == 200 and len(set(table.column("sid").to_pylist())) == 200
    assert (out / "indexer" / "indexer.json").exists()


@pytest.mark.slow
def test_failing_job_reports_failed_with_its_cause(cluster, tmp_path):
    job = submit(
        cluster,
        "lmi-broken",
        "python",
        "jobs/prepare.py",
        "--config",
        "configs/ci-tiny.yaml",
        f"output_dir={tmp_path}",
        f"data.input={tmp_path}/no-such-corpus.jsonl",
        timeout=300,
    )
    deadline = time.time() + 120
    while "Job 'lmi-broken' failed" not in (state := status(cluster, "lmi-broken")) and time.time() < deadline:
        time.sleep(2)
    assert "Job 'lmi-broken' failed" in state, state
    logs = ray_cli("job", "logs", f"--address={cluster['address']}", "lmi-broken", env=cluster["env"])
    assert "input not found" in logs.stdout and "no-such-corpus.jsonl" in logs.stdout, logs.stdout[-3000:]
    assert job.returncode != 0


def test_runtime_env_brings_every_dependency_the_image_lacks():
    with open(ROOT / "deploy" / "runtime_env.yaml") as f:
        env = yaml.safe_load(f)
    with open(ROOT / "pyproject.toml", "rb") as f:
        deps = tomllib.load(f)["project"]["dependencies"]
    name = re.compile(r"^[A-Za-z0-9_.-]+")
    needed = {name.match(d).group(0).lower() for d in deps} - {"ray", "torch"}
    assert needed == {name.match(p).group(0).lower() for p in env["pip"]}
    assert env["working_dir"] == "."

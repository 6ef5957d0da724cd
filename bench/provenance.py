"""What every committed bench output records about how it was made: the command, the commit, the date and the
machine."""

import json
import os
import platform
import subprocess
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def provenance() -> dict:
    """{command, commit, date, machine} of the running bench script."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    except ImportError:
        gpu = "no GPU"
    return {
        "command": " ".join([f"python -m bench.{Path(sys.argv[0]).stem}", *sys.argv[1:]]),
        "commit": commit.stdout.strip(),
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {gpu}",
    }


def write_result(path: str | Path, figures: dict) -> None:
    """Write a bench's figures with their provenance as the JSON that RESULTS.md is rendered from."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**figures, **provenance()}, indent=1) + "\n")
    print(f"wrote {path}", flush=True)

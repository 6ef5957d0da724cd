"""Where the benches find the public data sets: ../shared/data beside the checkout (the project's machines), or the
folder named by LMINDEXER_SHARED_DATA (a device machine gets a copy inside the checkout, e.g. data/shared)."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LMINDEXER_SHARED_DATA") or ROOT.parent / "shared" / "data").resolve()

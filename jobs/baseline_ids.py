"""`ray job submit ... -- python jobs/baseline_ids.py --config configs/X.yaml [key=value ...]`:
`lmindexer baseline-ids`."""

import sys

from lmindexer.cli import main

sys.exit(main(["baseline-ids", *sys.argv[1:]]))

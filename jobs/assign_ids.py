"""`ray job submit ... -- python jobs/assign_ids.py --config configs/X.yaml [key=value ...]`: `lmindexer assign-ids`."""

import sys

from lmindexer.cli import main

sys.exit(main(["assign-ids", *sys.argv[1:]]))

"""`ray job submit ... -- python jobs/learn_ids.py --config configs/X.yaml [key=value ...]`: `lmindexer learn-ids`."""

import sys

from lmindexer.cli import main

sys.exit(main(["learn-ids", *sys.argv[1:]]))

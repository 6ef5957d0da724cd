"""`ray job submit ... -- python jobs/evaluate.py --config configs/X.yaml [key=value ...]`: `lmindexer evaluate`."""

import sys

from lmindexer.cli import main

sys.exit(main(["evaluate", *sys.argv[1:]]))

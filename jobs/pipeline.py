"""`ray job submit ... -- python jobs/pipeline.py --config configs/X.yaml [key=value ...]`: `lmindexer run`."""

import sys

from lmindexer.cli import main

sys.exit(main(["run", *sys.argv[1:]]))

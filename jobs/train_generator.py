"""`ray job submit ... -- python jobs/train_generator.py --config configs/X.yaml [key=value ...]`:
`lmindexer train-generator`."""

import sys

from lmindexer.cli import main

sys.exit(main(["train-generator", *sys.argv[1:]]))

"""`ray job submit ... -- python jobs/prepare.py --config configs/X.yaml [key=value ...]`:
same as `lmindexer prepare`."""

import sys

from lmindexer.cli import main

sys.exit(main(["prepare", *sys.argv[1:]]))

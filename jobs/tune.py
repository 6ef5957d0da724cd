"""`ray job submit ... -- python jobs/tune.py --config configs/X.yaml [key=value ...]`: `lmindexer tune`."""

import sys

from lmindexer.cli import main

sys.exit(main(["tune", *sys.argv[1:]]))

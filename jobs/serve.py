"""`ray job submit ... -- python jobs/serve.py --config configs/X.yaml serve.host=0.0.0.0`: `lmindexer serve` on a
cluster (the job runs until it is stopped: `ray job stop`)."""

import sys

from lmindexer.cli import main

sys.exit(main(["serve", *sys.argv[1:]]))

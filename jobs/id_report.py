"""`ray job submit ... -- python jobs/id_report.py --config configs/X.yaml [key=value ...]`: `lmindexer id-report`."""

import sys

from lmindexer.cli import main

sys.exit(main(["id-report", *sys.argv[1:]]))

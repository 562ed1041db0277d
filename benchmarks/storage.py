"""perfintel vs VictoriaMetrics on the same machine and workload (see ``perfintel.bench.storage``).

.venv/bin/python benchmarks/storage.py                 # 1,000 series × 24 h at 10 s
.venv/bin/python benchmarks/storage.py --series 10000  # the q3 figure at 10,000 series
.venv/bin/python benchmarks/storage.py --memory        # server RSS with 100,000 active series

Iterating on the query figures: one run that keeps its data (no line-protocol
phase, no in-process bulk ingest), then only the queries, as often as needed:

.venv/bin/python benchmarks/storage.py --series 10000 --keep --skip-lp --inprocess-repeats 0
.venv/bin/python benchmarks/storage.py --queries-only /tmp/perfintel-bench-XXXX  # the kept directory
"""

from __future__ import annotations

import sys

from perfintel.bench.storage import main

if __name__ == "__main__":
    sys.exit(main())

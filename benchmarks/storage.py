"""perfintel vs VictoriaMetrics on the same machine and workload (see ``perfintel.bench.storage``).

.venv/bin/python benchmarks/storage.py                 # 1,000 series × 24 h at 10 s
.venv/bin/python benchmarks/storage.py --series 10000  # the q3 figure at 10,000 series
.venv/bin/python benchmarks/storage.py --memory        # server RSS with 100,000 active series
"""

from __future__ import annotations

import sys

from perfintel.bench.storage import main

if __name__ == "__main__":
    sys.exit(main())

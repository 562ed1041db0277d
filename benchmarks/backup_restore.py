"""Backup and restore of ≥ 20 M samples through the documented commands, compared sample for sample.

.venv/bin/python benchmarks/backup_restore.py                     # 2,000 series × 167 h at 60 s: 20.04 M samples
.venv/bin/python benchmarks/backup_restore.py --gzip              # the same through a .jsonl.gz backup
.venv/bin/python benchmarks/backup_restore.py --series 100 --hours 24   # a quick look

Prints the time and throughput of `perfintel backup` and `perfintel restore`,
the peak RSS of the server during each, and whether the backup file and the
restored server hold exactly the samples sent (see ``perfintel.bench.backup``).
"""

from __future__ import annotations

import sys

from perfintel.bench.backup import main

if __name__ == "__main__":
    sys.exit(main())

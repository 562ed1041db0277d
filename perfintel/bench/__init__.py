"""Benchmarks: a seeded realistic workload and the storage comparison with VictoriaMetrics.

Run ``python benchmarks/storage.py --help`` (or ``perfintel bench storage``).
Benchmarks print figures; they are never timed assertions.
"""

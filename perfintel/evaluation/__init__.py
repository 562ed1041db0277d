"""Evaluation of perfintel's models on public benchmarks."""

from perfintel.evaluation.nab import run_nab

__all__ = ["run_nab"]

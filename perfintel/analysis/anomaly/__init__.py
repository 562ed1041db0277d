"""Streaming anomaly detection.

Models are pure (``VectorModel``): their arithmetic is written once, as scalar
functions compiled by numba (plain Python without it), and advances any mix of
series held in one state bank. ``Detector`` runs one model on one series,
``OnlineRunner`` on many series at once — the same code, the same numbers.
``AnomalyDetector`` is the default: the ``Ensemble`` of a seasonal baseline, a
level-shift detector and a context-novelty detector, each judged by an anomaly
likelihood, with alarm suppression.
"""

from perfintel.analysis.anomaly.base import Field, StepOut, VectorModel
from perfintel.analysis.anomaly.detector import AnomalyDetector, Detector
from perfintel.analysis.anomaly.ensemble import Ensemble, EnsembleConfig
from perfintel.analysis.anomaly.likelihood import AnomalyLikelihood
from perfintel.analysis.anomaly.novelty import ContextNovelty
from perfintel.analysis.anomaly.online import OnlineRunner
from perfintel.analysis.anomaly.result import AnomalyResult
from perfintel.analysis.anomaly.seasonal import SeasonalBaseline
from perfintel.analysis.anomaly.shift import LevelShift

__all__ = [
    "AnomalyDetector",
    "AnomalyLikelihood",
    "AnomalyResult",
    "ContextNovelty",
    "Detector",
    "Ensemble",
    "EnsembleConfig",
    "Field",
    "LevelShift",
    "OnlineRunner",
    "SeasonalBaseline",
    "StepOut",
    "VectorModel",
]

"""The public names of perfintel.analysis.anomaly (changing them is an API change)."""

from __future__ import annotations

import perfintel.analysis.anomaly as anomaly


def test_exported_members() -> None:
    assert sorted(anomaly.__all__) == [
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
    for name in anomaly.__all__:
        assert getattr(anomaly, name).__module__.startswith("perfintel.analysis.anomaly.")

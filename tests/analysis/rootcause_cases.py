"""What the root-cause tests build their incidents from: a one-minute grid of 240 steps, an
incident at step 220, series labelled by instance (and service), and Gaussian noise."""

from __future__ import annotations

import numpy as np

from perfintel.analysis.signals import Grid, SeriesInput
from perfintel.model import label_set

STEP = 60_000
N = 240
GRID = Grid(0, STEP, N)
T = 220 * STEP  # the incident time


def si(name: str, instance: str, values: np.ndarray, service: str = "") -> SeriesInput:
    labels = {"__name__": name, "instance": instance}
    if service:
        labels["service"] = service
    return SeriesInput(label_set(labels), np.asarray(values, dtype=float))


def noise(seed: int, level: float, sd: float) -> np.ndarray:
    return level + np.random.default_rng(seed).normal(0, sd, N)

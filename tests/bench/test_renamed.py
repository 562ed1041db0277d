"""Generated incidents renamed to another convention keep their values, truth and meaning."""

from __future__ import annotations

import numpy as np
import pytest

from perfintel.analysis.rootcause import entity_of, host_of, is_occupancy, role_of
from perfintel.bench.incidents import VARIANT_PROFILE, generate_incident
from perfintel.bench.incidents_blind import generate_blind_incident
from perfintel.bench.renamed import CONVENTIONS, renamed
from perfintel.model import LabelSet, metric_name


def _reading(labels: LabelSet) -> tuple[object, ...]:
    return (
        role_of(labels),
        is_occupancy(labels, True),
        entity_of(labels).split("=", 1)[1],
        host_of(labels)[0],
    )


@pytest.mark.parametrize("convention", sorted(CONVENTIONS))
@pytest.mark.parametrize("seed", [0, 3])
def test_renamed_series_mean_what_the_originals_mean(convention: str, seed: int) -> None:
    for inc in (generate_incident(seed, VARIANT_PROFILE), generate_blind_incident(seed)):
        out = renamed(inc, convention)
        assert (out.root, out.affected, out.background) == (inc.root, inc.affected, inc.background)
        assert (out.time_ms, out.start_ms, out.step_ms) == (inc.time_ms, inc.start_ms, inc.step_ms)
        names = {metric_name(s.labels) for s in out.series}
        assert not names & {"requests_total", "errors_total", "http_errors_total"}
        for a, b in zip(inc.series, out.series, strict=True):
            assert np.array_equal(a.values, b.values, equal_nan=True) and a.counter == b.counter
            # entity values are kept, only their labels' names change; so must every reading
            assert _reading(a.labels) == _reading(b.labels), (a.labels, b.labels)

"""perfintel's rule kinds, found through the entry-point group ``perfintel.rule_kinds``.

The built-in kinds (``anomaly``, ``threshold_approaching``,
``capacity_exhaustion``, ``trend_degradation``, ``anomaly_burst``,
``error_budget_burn``) are declared in ``pyproject.toml`` under that group,
as a third-party kind would be; the same list is used when perfintel runs
from a source tree without installed metadata. See :mod:`.base` for the
contract.
"""

from __future__ import annotations

import functools
import importlib
import logging
from collections.abc import Mapping
from importlib.metadata import entry_points

from perfintel.alerting.rules.kinds.base import Finding, KindContext, KindParams, RuleKind

__all__ = ["BUILTIN", "Finding", "KindContext", "KindParams", "RuleKind", "kinds", "load_kinds"]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "perfintel.rule_kinds"

#: name -> "module:attribute" of the built-in kinds (also in pyproject.toml's entry points)
BUILTIN: Mapping[str, str] = {
    "anomaly": "perfintel.alerting.rules.kinds.anomaly:KIND",
    "anomaly_burst": "perfintel.alerting.rules.kinds.burst:KIND",
    "threshold_approaching": "perfintel.alerting.rules.kinds.forecast:KIND",
    "capacity_exhaustion": "perfintel.alerting.rules.kinds.capacity:KIND",
    "trend_degradation": "perfintel.alerting.rules.kinds.trend:KIND",
    "error_budget_burn": "perfintel.alerting.rules.kinds.slo:KIND",
}


def _load(ref: str) -> RuleKind:
    module, _, attr = ref.partition(":")
    kind: RuleKind = getattr(importlib.import_module(module), attr)
    return kind


def load_kinds() -> dict[str, RuleKind]:
    found = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    refs = {**BUILTIN, **found}
    out: dict[str, RuleKind] = {}
    for name, ref in sorted(refs.items()):
        try:
            kind = _load(ref)
        except Exception:  # a broken plug-in must not take the built-ins down
            log.exception("cannot load rule kind %s from %s", name, ref)
            continue
        out[kind.name] = kind
    return out


@functools.cache
def kinds() -> Mapping[str, RuleKind]:
    """Every rule kind by name (entry points are read once)."""
    return load_kinds()

"""Optimisation recommendations: rules as plugins over observed resource usage, costed.

The contract and data types are in :mod:`.base`, the built-in rules in
:mod:`.rightsizing`, :mod:`.leak` and :mod:`.headroom`, discovery through the
``perfintel.recommendations`` entry points in :mod:`.registry`.
"""

from .base import (
    CostModel,
    Evidence,
    Impact,
    Recommendation,
    RecommendationContext,
    RecommendationRule,
    Resource,
    Usage,
)
from .registry import available_rules, load_rules, run_rules

__all__ = [
    "CostModel",
    "Evidence",
    "Impact",
    "Recommendation",
    "RecommendationContext",
    "RecommendationRule",
    "Resource",
    "Usage",
    "available_rules",
    "load_rules",
    "run_rules",
]

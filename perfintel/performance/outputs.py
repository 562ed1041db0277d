"""The series perfintel's own models write back into the store, and how analyses leave them out.

The online detector stores, per analysed series, ``anomaly_score`` and its band
``yhat``, ``yhat_lower``, ``yhat_upper`` (vmanomaly's names); the peer-outlier
detector stores ``outlier_score``. Each carries the analysed series' labels
with ``__name__`` moved to the ``for`` label. They are never analysed again:
a band follows its metric by construction, so a root cause or a correlation
over them would count the same change twice (and a band leads nothing).
"""

from __future__ import annotations

from perfintel.model import METRIC_NAME, Matcher, MatchOp, Selector

#: Metric name of the stored peer-outlier scores.
OUTLIER_SCORE = "outlier_score"
#: Metric names of model outputs, never analysed themselves.
OUTPUT_NAMES = ("anomaly_score", "yhat", "yhat_lower", "yhat_upper", OUTLIER_SCORE)
#: Label naming the source metric of a model output.
FOR_LABEL = "for"


def names_output(selector: Selector) -> bool:
    """Does ``selector`` ask for a model output by name (``yhat_upper{...}``)?"""
    return any(
        m.name == METRIC_NAME and m.op is MatchOp.EQ and m.value in OUTPUT_NAMES
        for m in selector.matchers
    )


def without_outputs(selector: Selector) -> Selector:
    """``selector`` narrowed to the system's own series, unless it names a model output.

    Only a name given by equality keeps the outputs: ``{service="db"}`` or
    ``{__name__=~".+"}`` mean the service's metrics, not perfintel's verdicts on them.
    """
    if names_output(selector):
        return selector
    outputs = Matcher(METRIC_NAME, MatchOp.NRE, "|".join(OUTPUT_NAMES))
    return Selector((*selector.matchers, outputs))

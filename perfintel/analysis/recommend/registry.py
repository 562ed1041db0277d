"""Finding the recommendation rules: the ``perfintel.recommendations`` entry-point group.

Every rule, the built-in ones included, is a class registered under that
group (``pyproject.toml`` of perfintel for the built-ins; a third-party
package does the same in its own)::

    [project.entry-points."perfintel.recommendations"]
    my_rule = "my_package.rules:MyRule"

:func:`load_rules` instantiates them (no arguments); :func:`run_rules` runs
the rules whose required context sections are present and sorts the
recommendations (largest monthly saving first, then the rest by confidence).
A rule that raises does not sink the others: the error is reported next to
the results.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points

from perfintel.errors import BadInputError, ConfigError

from .base import Recommendation, RecommendationContext, RecommendationRule

GROUP = "perfintel.recommendations"


@dataclass(frozen=True)
class RuleFailure:
    rule: str
    error: str


def available_rules() -> dict[str, str]:
    """``{name: "module:Class"}`` of every registered rule."""
    return {ep.name: ep.value for ep in entry_points(group=GROUP)}


def load_rules(names: Sequence[str] | None = None) -> list[RecommendationRule]:
    """Instances of the registered rules (all, or those named, in that order).

    Raises ``BadInputError`` for an unknown name and ``ConfigError`` for an
    entry point that does not load or is not a rule.
    """
    eps = {ep.name: ep for ep in entry_points(group=GROUP)}
    wanted = list(names) if names is not None else sorted(eps)
    unknown = [n for n in wanted if n not in eps]
    if unknown:
        raise BadInputError(
            f"invalid parameter 'kinds': unknown recommendation kind(s) {', '.join(unknown)} "
            f"(available: {', '.join(sorted(eps))})"
        )
    rules: list[RecommendationRule] = []
    for n in wanted:
        try:
            rule = eps[n].load()()
        except Exception as exc:  # a plugin's import error must name the plugin
            raise ConfigError(
                f"recommendation rule {n!r} ({eps[n].value}) failed to load: {exc}"
            ) from exc
        if not isinstance(rule, RecommendationRule):
            raise ConfigError(
                f"recommendation rule {n!r} ({eps[n].value}) lacks name, requires or evaluate()"
            )
        rules.append(rule)
    return rules


def run_rules(
    rules: Sequence[RecommendationRule], context: RecommendationContext
) -> tuple[list[Recommendation], list[RuleFailure], list[str]]:
    """``(recommendations, failures, skipped rule names)`` of running ``rules`` on ``context``."""
    out: list[Recommendation] = []
    failures: list[RuleFailure] = []
    skipped: list[str] = []
    for rule in rules:
        if not rule.requires <= context.sections:
            skipped.append(rule.name)
            continue
        try:
            out.extend(rule.evaluate(context))
        except (ArithmeticError, ValueError, LookupError, TypeError) as exc:
            failures.append(RuleFailure(rule.name, f"{type(exc).__name__}: {exc}"))
    out.sort(
        key=lambda r: (
            r.impact.monthly_cost if r.impact is not None and r.impact.monthly_cost < 0 else 0.0,
            -r.confidence,
            r.kind,
            r.resource.name,
        )
    )
    return out, failures, skipped

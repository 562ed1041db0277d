"""The rule engine's self-metrics (Prometheus's ``prometheus_rule_*`` under perfintel's prefix).

``rule_group`` labels are ``<file>;<group name>``, as Prometheus's.
"""

from __future__ import annotations

from perfintel.telemetry import Counter, Gauge, Histogram, Registry

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class RuleMetrics:
    def __init__(self, registry: Registry | None = None) -> None:
        r = registry if registry is not None else Registry()
        self.registry = r
        self.evaluation_duration = Histogram(
            "perfintel_rule_evaluation_duration_seconds",
            "Duration of one rule's evaluation.",
            buckets=_BUCKETS,
            registry=r,
        )
        self.group_duration = Histogram(
            "perfintel_rule_group_duration_seconds",
            "Duration of one rule group's evaluation (all its rules).",
            buckets=_BUCKETS,
            registry=r,
        )
        self.evaluations = Counter(
            "perfintel_rule_evaluations_total",
            "Rule evaluations.",
            ["rule_group"],
            registry=r,
        )
        self.failures = Counter(
            "perfintel_rule_evaluation_failures_total",
            "Rule evaluations that failed.",
            ["rule_group"],
            registry=r,
        )
        self.missed = Counter(
            "perfintel_rule_group_iterations_missed_total",
            "Group evaluations skipped because the previous one was still running.",
            ["rule_group"],
            registry=r,
        )
        self.group_rules = Gauge(
            "perfintel_rule_group_rules", "Rules in the group.", ["rule_group"], registry=r
        )
        self.group_interval = Gauge(
            "perfintel_rule_group_interval_seconds",
            "Evaluation interval of the group.",
            ["rule_group"],
            registry=r,
        )
        self.group_last_duration = Gauge(
            "perfintel_rule_group_last_duration_seconds",
            "Duration of the group's last evaluation.",
            ["rule_group"],
            registry=r,
        )
        self.group_last_evaluation = Gauge(
            "perfintel_rule_group_last_evaluation_timestamp_seconds",
            "When the group was last evaluated (Unix seconds).",
            ["rule_group"],
            registry=r,
        )
        self.alerts_sent = Counter(
            "perfintel_rule_alerts_sent_total",
            "Alert updates handed to the notification pipeline.",
            registry=r,
        )
        self.sink_errors = Counter(
            "perfintel_rule_alert_send_errors_total",
            "Alert updates the notification pipeline refused (they are sent again next time).",
            registry=r,
        )
        self.state_errors = Counter(
            "perfintel_rule_state_write_errors_total",
            "Alert-state writes to the alerting database that failed.",
            registry=r,
        )
        self.reload_success = Gauge(
            "perfintel_rule_config_last_reload_successful",
            "Whether the last rule (re)load succeeded (1) or was refused (0).",
            registry=r,
        )
        self.reload_time = Gauge(
            "perfintel_rule_config_last_reload_success_timestamp_seconds",
            "When rules were last loaded successfully (Unix seconds).",
            registry=r,
        )

    def forget_group(self, key: str) -> None:
        for m in (
            self.evaluations,
            self.failures,
            self.missed,
            self.group_rules,
            self.group_interval,
            self.group_last_duration,
            self.group_last_evaluation,
        ):
            m.remove(key)

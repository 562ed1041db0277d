"""Parts of one measurement (cores, buckets, quantiles) read as one cause."""

from __future__ import annotations

from dataclasses import dataclass

from perfintel.analysis.rootcause.parts import group_parts, measurement_of
from perfintel.analysis.rootcause.words import describe_series, explain
from perfintel.model import LabelSet, label_set


@dataclass(frozen=True)
class Ranked:
    labels: LabelSet


def cpu(core: int, mode: str = "iowait", host: str = "db-1") -> Ranked:
    return Ranked(
        label_set(
            {"__name__": "node_cpu_seconds_total", "cpu": str(core), "mode": mode, "instance": host}
        )
    )


def test_cores_of_one_machine_and_mode_are_one_cause_where_the_first_ranked() -> None:
    latency = Ranked(label_set({"__name__": "http_latency", "instance": "api-1"}))
    ranked = [cpu(6), latency, cpu(5), cpu(2, "user"), cpu(1, host="db-2"), cpu(0)]
    groups = group_parts(ranked)
    assert [g.first for g in groups] == [cpu(6), latency, cpu(2, "user"), cpu(1, host="db-2")]
    assert groups[0].part_label == "cpu" and groups[0].others == (cpu(5), cpu(0))
    assert groups[1].part_label is None and groups[1].others == ()
    assert groups[2].others == () and groups[3].others == ()


def test_buckets_and_quantiles_are_parts_a_name_alone_is_not() -> None:
    def bucket(le: str) -> Ranked:
        return Ranked(label_set({"__name__": "req_seconds_bucket", "le": le, "pod": "p"}))

    groups = group_parts([bucket("0.1"), bucket("+Inf"), bucket("0.5")])
    assert len(groups) == 1 and groups[0].part_label == "le" and len(groups[0].others) == 2
    assert measurement_of(label_set({"le": "1"})) is None  # no metric name: no measurement
    assert measurement_of(label_set({"__name__": "up", "instance": "a"})) is None


def test_a_series_is_described_by_what_tells_it_apart_not_where_it_is() -> None:
    assert describe_series(cpu(3).labels) == 'node_cpu_seconds_total{cpu="3",mode="iowait"} on db-1'
    plain = label_set({"__name__": "up", "instance": "a", "job": "j", "namespace": "shop"})
    assert describe_series(plain) == "up on a"
    assert describe_series(cpu(3).labels, counter=True).startswith("the rate of node_cpu_seconds")


def test_the_explanation_names_a_follower_that_is_not_another_part() -> None:
    latency = label_set({"__name__": "http_latency", "instance": "api-1"})
    text = explain(
        cpu(6).labels,
        "saturation",
        40.0,
        0,
        [(cpu(5).labels, "saturation", 39.0, 0), (latency, "shift", 12.0, 120_000)],
        None,
    )
    assert text.startswith("http_latency on api-1 rose 2 min after node_cpu_seconds_total{cpu=")
    assert text.endswith("; 1 more series followed")


def test_the_explanation_names_a_symptom_first_and_never_a_negative_lag() -> None:
    # The commit rate of the database, dated a step before the slow replica within their onsets'
    # uncertainty, came first among the followers and read "declined steadily -120 s after":
    # the sentence names what users see (a latency) and a follower dated earlier began "as" it.
    cause = label_set(
        {
            "__name__": "node_cpu_seconds_total",
            "cpu": "0",
            "mode": "iowait",
            "instance": "db-1:9100",
        }
    )
    commits = label_set({"__name__": "pg_stat_database_xact_commit_total", "instance": "db-0:9187"})
    latency = label_set({"__name__": "request_latency_seconds", "instance": "search-0:8080"})
    text = explain(
        cause,
        "saturation",
        30.0,
        0,
        [(commits, "ramp", -8.0, -120_000), (latency, "shift", 9.0, 60_000)],
        None,
    )
    assert text.startswith("request_latency_seconds on search-0:8080 rose 60 s after"), text
    assert "-120" not in text and "1 more series followed" in text
    alone = explain(cause, "saturation", 30.0, 0, [(commits, "ramp", -8.0, -120_000)], None)
    assert alone.startswith(
        "pg_stat_database_xact_commit_total on db-0:9187 declined steadily as "
    ), alone

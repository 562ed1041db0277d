"""The Go-template subset: what Prometheus's rule templates print, and clear errors."""

from __future__ import annotations

import pytest

from perfintel.alerting.rules.template import RuleTemplate, TemplateError, template_data
from perfintel.alerting.rules.template_funcs import go_float, humanize_duration, printf


def render(src: str, labels: dict[str, str] | None = None, value: float = 0.5) -> str:
    data = template_data(
        labels or {"instance": "a:9090", "job": "api"}, value, {"dc": "x"}, "http://pi"
    )
    return RuleTemplate(src, "t").render(data)


@pytest.mark.parametrize(
    ("src", "want"),
    [
        ("{{ $labels.instance }} of {{ .Labels.job }}", "a:9090 of api"),
        ("{{ $value }}", "0.5"),
        ("{{ $externalLabels.dc }} {{ $externalURL }}", "x http://pi"),
        ("{{ $labels.missing }}|", "|"),
        ("{{ if gt $value 0.4 }}hi{{ else if gt $value 0.1 }}mid{{ else }}lo{{ end }}", "hi"),
        ("{{ if lt $value 0.4 }}hi{{ else if gt $value 0.1 }}mid{{ else }}lo{{ end }}", "mid"),
        (
            "{{- range $k, $v := $labels }}[{{ $k }}={{ $v }}]{{- end }}",
            "[instance=a:9090][job=api]",
        ),
        ("{{ range $labels }}{{ . }},{{ end }}", "a:9090,api,"),
        ("{{ with $labels.job }}job={{ . }}{{ end }}", "job=api"),
        ("{{ $x := 3 }}{{ $x = 4 }}{{ $x }}", "4"),
        ("a {{- /* note */ -}} b", "ab"),
        ('{{ "quoted \\"x\\"" }}', 'quoted "x"'),
        ("{{ `raw` | toUpper }}", "RAW"),
        ('{{ (index $labels "job") | printf "%s!" }}', "api!"),
        ('{{ and 1 "" }}|{{ or 0 "y" }}|{{ not true }}', "|y|false"),
        ("{{ len $labels }}", "2"),
        ('{{ reReplaceAll ":.*" "" $labels.instance }}', "a"),
        ('{{ eq $labels.job "api" "web" }}', "true"),
        ("{{ $labels }}", "map[instance:a:9090 job:api]"),
    ],
)
def test_expansions(src: str, want: str) -> None:
    assert render(src) == want


def test_go_float_matches_fmt_sprint() -> None:
    # Go's fmt prints float64 with %v: shortest digits, exponent from 1e+06 and below 1e-04
    cases = {
        1e6: "1e+06",
        123456.0: "123456",
        0.0001: "0.0001",
        0.00001: "1e-05",
        1.5: "1.5",
        -2.0: "-2",
        1234567.0: "1.234567e+06",
        float("inf"): "+Inf",
        float("nan"): "NaN",
    }
    for v, want in cases.items():
        assert go_float(v) == want


def test_humanize_family() -> None:
    assert render("{{ humanize $value }}", value=1234567) == "1.235M"
    assert render("{{ humanize $value }}", value=0.000012) == "12u"
    assert render("{{ humanize1024 $value }}", value=1048576) == "1Mi"
    assert render("{{ humanizePercentage $value }}", value=0.1234) == "12.34%"
    assert humanize_duration(90061) == "1d 1h 1m 1s"
    assert humanize_duration(0.25) == "250ms"
    assert humanize_duration(0) == "0s"
    assert render("{{ humanizeTimestamp $value }}", value=0) == "1970-01-01 00:00:00 +0000 UTC"


def test_printf_verbs() -> None:
    assert printf("%d|%5.1f|%-4s|%q|%x|%%", 7, 2.25, "ab", "q", 255) == '7|  2.2|ab  |"q"|ff|%'
    assert printf("%d", 1.5) == "%!d(float64=1.5)"
    assert printf("%s") == "%!s(MISSING)"


@pytest.mark.parametrize(
    ("src", "where", "why"),
    [
        ("{{ $labels.x ", "t:1:1", "unclosed action"),
        ("ok\n  {{ nosuch 1 }}", "t:2:6", 'function "nosuch" not defined'),
        ("{{ if true }}x", "t:1:", "without {{end}}"),
        ("{{ end }}", "t:1:3", "unexpected {{end}}"),
        ("{{ $nope }}", "t:1:4", "undefined variable: $nope"),
        ("{{ 1 2 }}", "t:1:4", "can't give argument to non-function"),
        ('{{ define "x" }}{{ end }}', "t:1:3", "not supported"),
    ],
)
def test_errors_say_where_and_why(src: str, where: str, why: str) -> None:
    with pytest.raises(TemplateError) as exc:
        RuleTemplate(src, "t").render(template_data({}, 1.0, {}, ""))
    assert str(exc.value).startswith(where) and why in str(exc.value)


def test_runtime_errors_name_the_function() -> None:
    with pytest.raises(TemplateError, match="error calling humanize"):
        render('{{ humanize "not a number" }}')


def test_no_way_out_of_the_sandbox() -> None:
    # attribute access is map lookup only: no Python attributes, no calls of values
    assert render("{{ $labels.__class__ }}|") == "|"
    with pytest.raises(TemplateError):
        render("{{ $value.real }}")

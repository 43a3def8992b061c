"""The Grafana dashboard (localstack/grafana/dashboards/) parses, has the panels the issue asks
for, and references only metrics and labels the code exports — read from the metrics modules'
real Prometheus registries, or from docs/contracts.md for a module not written yet."""

from __future__ import annotations

import importlib
import inspect
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "localstack" / "grafana" / "dashboards" / "live-viewer-profiles.json"
DATASOURCES = ROOT / "localstack" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
CONTRACTS = ROOT / "docs" / "contracts.md"
METRICS_MODULES = {
    "collector": "collector.metrics",
    "profiles": "profiles.metrics",
    "viewer": "viewer.metrics",
}

# Series Prometheus makes itself, and labels every scraped series carries.
SYNTHETIC_METRICS = {"up"}
TARGET_LABELS = {"instance", "job"}
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created", ""),
    "gauge": ("",),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}
PROMQL_WORDS = {
    # aggregation operators (may be followed by `by (...)` instead of a parenthesis)
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk",
    "topk", "quantile", "limitk", "limit_ratio",
    # keywords
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
    "offset", "atan2",
}  # fmt: skip
REQUIRED_PANELS = [
    r"ingest rate",
    r"bad rows by reason",
    r"consumer lag",
    r"active viewers by status",
    r"event → push latency",
]


class Family:
    def __init__(self, name: str, type_: str, labels: set[str]) -> None:
        self.name, self.type, self.labels = name, type_, labels

    def series(self) -> dict[str, set[str]]:
        """Series name -> label names it can carry."""
        extra = {"le"} if self.type == "histogram" else {"quantile"} if self.type == "summary" else set()
        return {
            self.name + s: self.labels | (extra if s in ("_bucket", "") else set())
            for s in SUFFIXES[self.type]
        }


def _families_of(obj: Any) -> list[Family]:
    found = []
    for value in vars(obj).values():
        if isinstance(value, MetricWrapperBase):
            for fam in value.describe():
                found.append(Family(fam.name, fam.type, set(getattr(value, "_labelnames", ()))))
    return found


def exported_by_module(module_name: str) -> dict[str, Family] | None:
    """Metric families a metrics module registers: module-level metrics, or the metrics of each
    class built with a fresh registry. None when the module does not exist yet."""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise
    families = _families_of(module)
    for cls in vars(module).values():
        if not inspect.isclass(cls) or cls.__module__ != module.__name__:
            continue
        if issubclass(cls, MetricWrapperBase):  # a metric type (e.g. a Histogram subclass), not a holder
            continue
        params = inspect.signature(cls).parameters
        if "registry" in params:
            factory: Any = cls
            families += _families_of(factory(registry=CollectorRegistry()))
        elif all(p.default is not p.empty for p in params.values()) and any(
            isinstance(v, MetricWrapperBase) for v in vars(cls).values()
        ):
            families += _families_of(cls)
    return {f.name: f for f in families}


def contract_families(prefix: str) -> dict[str, Family]:
    """Families docs/contracts.md names for one component: `name{label,...}` (histogram) ..."""
    text = CONTRACTS.read_text().split("## Prometheus metric names", 1)[1]
    out: dict[str, Family] = {}
    for m in re.finditer(r"`(lvp_[a-z0-9_]+)(?:\{([a-z_,]+)\})?`(\s*\((histogram|gauge)[^)]*\))?", text):
        name, labels, kind = m.group(1), m.group(2), m.group(4)
        if not name.startswith(f"lvp_{prefix}_"):
            continue
        type_ = kind or ("counter" if name.endswith("_total") else "gauge")
        base = name[: -len("_total")] if type_ == "counter" else name
        out[base] = Family(base, type_, set(labels.split(",")) if labels else set())
    return out


@pytest.fixture(scope="module")
def exported() -> dict[str, set[str]]:
    """Series name -> label names, for every series the code exports."""
    series: dict[str, set[str]] = {}
    for component, module_name in METRICS_MODULES.items():
        families = exported_by_module(module_name)
        if families is None:
            families = contract_families(component)
        assert families, f"no metrics found for {component}"
        for fam in families.values():
            series.update(fam.series())
    return series


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in dashboard["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in panels(dashboard) for t in p.get("targets", [])]


def test_dashboard_is_well_formed(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] and dashboard["title"]
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    provisioned = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    uids = {d["uid"] for d in provisioned if d["type"] == "prometheus"}
    for p in panels(dashboard):
        if p["type"] == "row":
            continue
        assert p["targets"], f"panel {p['title']!r} has no query"
        assert p["datasource"]["uid"] in uids, f"panel {p['title']!r} uses an unprovisioned datasource"
        for t in p["targets"]:
            assert t["expr"].strip() and t["datasource"]["uid"] in uids
        pos = p["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, f"panel {p['title']!r} is off the grid"


def test_dashboard_has_the_required_panels(dashboard: dict[str, Any]) -> None:
    titles = [p["title"].lower() for p in panels(dashboard) if p["type"] != "row"]
    for pattern in REQUIRED_PANELS:
        assert any(re.search(pattern, t) for t in titles), f"no panel matching {pattern!r}"


def metric_names(expr: str) -> set[str]:
    """Series names in a PromQL expression (identifiers that are not functions or keywords)."""
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_strings)
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_ranges):
        name, rest = m.group(0), without_ranges[m.end() :].lstrip()
        before = without_ranges[: m.start()].rstrip()
        if rest.startswith("(") or before.endswith(("by (", "by(", "without (", "without(")):
            continue  # a function call or aggregation keyword
        if re.search(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*$", before):
            continue  # a label inside by (...)
        if before.endswith(("{", ",")) and re.match(r"\s*(=~|!~|!=|=)", without_ranges[m.end() :]):
            continue  # a label matcher
        if name in PROMQL_WORDS:
            continue
        names.add(name)
    return names


def test_metric_name_parser() -> None:
    e = (
        "histogram_quantile(0.95, sum by (le, route) "
        '(rate(lvp_x_seconds_bucket{code=~"5.."}[$__rate_interval])))'
    )
    assert metric_names(e) == {"lvp_x_seconds_bucket"}
    assert metric_names('sum(up{job=~"a|b"}) or vector(0)') == {"up"}


def test_dashboard_uses_only_exported_metrics(
    dashboard: dict[str, Any], exported: dict[str, set[str]]
) -> None:
    used = {n for e in exprs(dashboard) for n in metric_names(e)}
    assert used, "no metrics found in the dashboard"
    unknown = sorted(used - set(exported) - SYNTHETIC_METRICS)
    assert not unknown, f"dashboard references metrics the code does not export: {unknown}"
    for e in exprs(dashboard):
        assert metric_names(e) & set(exported) or metric_names(e) <= SYNTHETIC_METRICS, e


def test_dashboard_uses_only_exported_labels(
    dashboard: dict[str, Any], exported: dict[str, set[str]]
) -> None:
    for e in exprs(dashboard):
        names = metric_names(e)
        available = set().union(*(exported.get(n, set()) for n in names)) | TARGET_LABELS
        for m in re.finditer(r"\b(?:by|without)\s*\(([^)]*)\)", e):
            for label in filter(None, (x.strip() for x in m.group(1).split(","))):
                assert label in available, f"label {label!r} is not exported by {sorted(names)}: {e}"
        for m in re.finditer(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}", e):
            series_labels = exported.get(m.group(1), set()) | TARGET_LABELS
            for label in re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", m.group(2)):
                assert label in series_labels, f"{m.group(1)} has no label {label!r}: {e}"


# --- the same metrics on AWS: ADOT sidecars -> CloudWatch (terraform/metrics.tf, alarms.tf) -----------------
def _terraform() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    from test_terraform import TF, load_module, locals_of, named, typed

    root = load_module(TF)
    return locals_of(TF), named(root["module"]), typed(root["resource"]) | typed(root["data"])


def _exported_by(component: str) -> dict[str, set[str]]:
    families = exported_by_module(METRICS_MODULES[component]) or contract_families(component)
    return {name: labels for fam in families.values() for name, labels in fam.series().items()}


def test_every_service_ships_its_metrics_to_cloudwatch() -> None:
    """Each deployed task runs the ADOT sidecar scraping its own service's /metrics port, and
    every series it forwards (and every dimension) is one the code exports."""
    local, calls, _ = _terraform()
    scrape = local["metrics_scrape"]
    env = local["service_environment"]
    ports = {
        "collector": env["collector"]["LVP_COLLECTOR_PORT"],
        "profiles": env["profiles"]["LVP_PROFILES_METRICS_PORT"],
        "viewer": env["viewer"]["LVP_VIEWER_PORT"],
    }
    assert set(scrape) == set(ports) == set(METRICS_MODULES)
    for service, port in ports.items():
        assert str(scrape[service]["port"]) == port, service
        call = calls[service]
        assert call["metrics_sidecar"]["config"] == f'${{local.adot_config["{service}"]}}'
        assert "var.adot_image" in call["metrics_sidecar"]["image"]
        assert call["metrics_policy_json"] == "${data.aws_iam_policy_document.metrics_sidecar.json}"
        series = _exported_by(service)
        for declaration in scrape[service]["declarations"]:
            for selector in declaration["metric_name_selectors"]:
                matching = [n for n in series if re.match(selector, n)]
                assert matching, f"{service}: {selector} matches no exported series"
                for dims in declaration["dimensions"]:
                    assert dims[0] == "Service", dims  # the scrape's static label
                    for label in dims[1:]:
                        assert all(label in series[n] for n in matching), f"{selector} has no label {label}"
    assert "awsemf" in local["adot_config"] and "127.0.0.1:" in local["adot_config"]


def test_alarms_watch_the_projects_own_signals() -> None:
    local, _, resources = _terraform()
    declared = {
        (re.sub(r"^\^", "", sel), tuple(dims))
        for service, scrape in local["metrics_scrape"].items()
        for d in scrape["declarations"]
        for sel in d["metric_name_selectors"]
        for dims in d["dimensions"]
    }
    alarms = {
        k.split(".")[1]: v for k, v in resources.items() if k.startswith("aws_cloudwatch_metric_alarm.")
    }

    def metrics_of(alarm: dict[str, Any]) -> list[tuple[str, dict[str, str]]]:
        if "metric_name" in alarm:
            assert alarm["namespace"] == "${local.metrics_namespace}" or alarm["namespace"].startswith("AWS/")
            return [(alarm["metric_name"], alarm.get("dimensions", {}))]
        return [
            (q["metric"][0]["metric_name"], q["metric"][0]["dimensions"])
            for q in alarm["metric_query"]
            if "metric" in q
        ]

    watched = {}
    for name, alarm in alarms.items():
        for metric, dims in metrics_of(alarm):
            if metric.startswith("lvp_"):
                assert (metric, tuple(sorted(dims, key=lambda d: d != "Service"))) in declared, (name, metric)
                watched[metric] = name
    for signal in (
        "lvp_profiles_consumer_lag",  # consumer lag
        "lvp_collector_events_total",  # bad-row rate (outcome=bad) ...
        "lvp_profiles_bad_messages_total",  # ... and the consumer's bad rows
        "lvp_viewer_push_latency_seconds",  # event -> push latency
        "lvp_viewer_sse_clients",  # SSE clients
    ):
        assert signal in watched, f"no alarm on {signal}"
    bad = alarms["bad_rows"]
    collector_query = next(q for q in bad["metric_query"] if q.get("id") == "collector")
    assert collector_query["metric"][0]["dimensions"]["outcome"] == "bad"
    for name in set(watched.values()):
        assert alarms[name]["alarm_actions"] == ["${aws_sns_topic.alarms.arn}"], name


def test_the_metrics_sidecar_may_only_write_its_log_group() -> None:
    _, _, resources = _terraform()
    doc = resources["aws_iam_policy_document.metrics_sidecar"]
    (statement,) = doc["statement"]
    assert set(statement["actions"]) == {
        "logs:CreateLogStream",
        "logs:DescribeLogStreams",
        "logs:PutLogEvents",
    }
    assert all("aws_cloudwatch_log_group.metrics.arn" in r for r in statement["resources"])
    group = resources["aws_cloudwatch_log_group.metrics"]
    assert "kms_key_id" in group and group["retention_in_days"] == "${var.metrics_log_retention_days}"

"""A Grafana dashboard (JSON model, schema 39) over the series ``/metrics`` exposes.

Import it in Grafana (Dashboards -> New -> Import) and pick the Prometheus data source
that scrapes ``monitoring serve``; the ``host`` variable filters one machine or all.
The panels mirror the built-in dashboard: calls per minute, error rate, latency
percentiles from the histograms, tokens and cost by model, tool latency, CPU/memory.
"""

from __future__ import annotations

from typing import Any

__all__ = ["grafana_dashboard"]

_SEL = 'host=~"$host"'


def _panel(pid: int, title: str, exprs: list[tuple[str, str]], unit: str, x: int, y: int,
           w: int = 12) -> dict[str, Any]:
    return {
        "id": pid, "type": "timeseries", "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": w, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
        "targets": [{"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend,
                     "datasource": {"type": "prometheus", "uid": "${datasource}"}}
                    for i, (expr, legend) in enumerate(exprs)],
    }


def grafana_dashboard(title: str = "LLM telemetry") -> dict[str, Any]:
    q = _SEL
    panels = [
        _panel(1, "LLM calls per minute", [
            (f'sum by (model) (rate(llm_requests_total{{operation="llm_call",{q}}}[5m])) * 60', "{{model}}")],
            "short", 0, 0),
        _panel(2, "Error rate", [
            (f'sum(rate(llm_requests_total{{operation="llm_call",success="false",{q}}}[5m])) / '
             f'sum(rate(llm_requests_total{{operation="llm_call",{q}}}[5m]))', "llm"),
            (f'sum(rate(tool_calls_total{{success="false",{q}}}[5m])) / sum(rate(tool_calls_total{{{q}}}[5m]))',
             "tools")], "percentunit", 12, 0),
        _panel(3, "LLM latency", [
            (f'histogram_quantile({p}, sum by (le) (rate(llm_request_duration_seconds_bucket'
             f'{{operation="llm_call",{q}}}[5m])))', f"p{int(p * 100)}") for p in (0.5, 0.95, 0.99)],
            "s", 0, 8),
        _panel(4, "Time to first token (p95)", [
            (f'histogram_quantile(0.95, sum by (le, model) (rate(llm_time_to_first_token_seconds_bucket'
             f'{{{q}}}[5m])))', "{{model}}")], "s", 12, 8),
        _panel(5, "Tokens per minute by model", [
            (f'sum by (model, type) (rate(llm_tokens_total{{{q}}}[5m])) * 60', "{{model}} {{type}}")],
            "short", 0, 16),
        _panel(6, "Cost per hour by model", [
            (f'sum by (model) (rate(llm_cost_total{{{q}}}[1h])) * 3600', "{{model}}")], "currencyUSD", 12, 16),
        _panel(7, "Tool latency (p95)", [
            (f'histogram_quantile(0.95, sum by (le, tool) (rate(tool_call_duration_seconds_bucket{{{q}}}[5m])))',
             "{{tool}}")], "s", 0, 24),
        _panel(8, "CPU and memory", [
            (f"system_cpu_percent{{{q}}}", "cpu {{host}}"), (f"system_memory_percent{{{q}}}", "memory {{host}}")],
            "percent", 12, 24),
        _panel(9, "Firing alerts", [("sum by (rule, severity) (monitoring_alerts_firing)", "{{rule}} ({{severity}})")],
               "short", 0, 32, w=24),
    ]
    return {
        "title": title, "uid": "llm-telemetry", "schemaVersion": 39, "version": 1, "editable": True,
        "time": {"from": "now-6h", "to": "now"}, "refresh": "30s", "tags": ["llm", "telemetry"],
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"},
            {"name": "host", "type": "query", "label": "host", "includeAll": True, "multi": True,
             "allValue": ".*", "current": {"text": "All", "value": "$__all"},
             "datasource": {"type": "prometheus", "uid": "${datasource}"},
             "query": {"query": "label_values(monitoring_records_total, host)", "refId": "hosts"},
             "definition": "label_values(monitoring_records_total, host)", "refresh": 2},
        ]},
        "panels": panels,
    }

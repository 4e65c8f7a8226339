"""Ways out of the log folder: Prometheus metrics, Grafana dashboards, OTLP to a collector."""

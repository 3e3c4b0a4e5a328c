"""Prometheus metrics: one catalog of names, collectors, and the /metrics server."""

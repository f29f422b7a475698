"""Sentry and Prometheus metrics for every process (logging lives in observability.logs.py)."""

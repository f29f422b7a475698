"""Sentry and Prometheus metrics for every process (logging lives in logging_setup.py)."""

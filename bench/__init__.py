"""The performance benchmark of issue 6: `make bench` (full) or `python -m bench --smoke` (harness check)."""

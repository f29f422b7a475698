"""One line per drill: what was injected and what was counted, printed and kept as JSON lines.

`report()` prints a readable line (seen with `pytest -s`) and appends a JSON object to
`$DRILLS_REPORT` (default /tmp/vyp-drills-report.jsonl), from which the closing note's table is made.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

DEFAULT_REPORT_PATH = "/tmp/vyp-drills-report.jsonl"


def report_path() -> Path:
    """Where the JSON lines go: `$DRILLS_REPORT`, else /tmp/vyp-drills-report.jsonl."""
    return Path(os.environ.get("DRILLS_REPORT") or DEFAULT_REPORT_PATH)


def _format_count(value: int | float | str) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def report(drill: str, injected: str, **counts: int | float | str) -> None:
    """Print one readable line for a drill and append it as JSON to the drills report."""
    counted = ", ".join(f"{name}={_format_count(value)}" for name, value in counts.items())
    line = f"[drill {drill}] injected: {injected} | counted: {counted or '-'}"
    print(f"\n{line}", file=sys.stdout, flush=True)
    record = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "drill": drill,
        "injected": injected,
        "counts": counts,
        "full": bool(os.environ.get("DRILLS_FULL")),
    }
    path = report_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(record, sort_keys=False, default=str) + "\n")


def table(path: Path | None = None) -> str:
    """The drills report as a Markdown table: drill, what was injected, what was counted (last run of each line)."""
    path = path or report_path()
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    lines = ["| drill | injected | counted |", "| --- | --- | --- |"]
    for row in rows:
        counted = ", ".join(f"{k}={_format_count(v)}" for k, v in row["counts"].items())
        lines.append(f"| {row['drill']} | {row['injected']} | {counted} |".replace("\n", " "))
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(Path(sys.argv[1]) if len(sys.argv) > 1 else None))

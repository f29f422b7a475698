"""Partition moves between two relays of one consumer group: which partitions a relay holds (from its log), and
what a stopped relay cost the requests on its partitions (from the load generator's trace of every request).

Definitions (RESULTS.md repeats them):
- moved partitions: the request topic's partitions the stopped relay held when it was signalled;
- move time: from the signal until the first answer to a request written to a moved partition *after* the signal
  (such a request can only be answered once the surviving relay has taken that partition);
- longest answer gap: the longest time with no answer at all on the moved partitions, around the signal
  (the same on the partitions that did not move: an eager rebalance pauses those too);
- lost: requests never answered; duplicates: answers beyond the first to one request (at-least-once: a relay
  killed before its offsets were committed has its last requests handed over again by the next owner).
"""

from __future__ import annotations

import itertools
import re
from typing import Any

ASSIGNED = re.compile(r"partitions (assigned|revoked): (.*)$")


def held_partitions(log_text: str, topic: str) -> set[int]:
    """The partitions of `topic` a relay holds after the assignment and revocation lines of its log, in order."""
    held: set[int] = set()
    for line in log_text.splitlines():
        match = ASSIGNED.search(line)
        if not match:
            continue
        found = {int(p) for p in re.findall(rf"(?<![\w-]){re.escape(topic)}\[(\d+)\]", match.group(2))}
        held = held | found if match.group(1) == "assigned" else held - found
    return held


def _longest_gap(times: list[float], t0: float) -> float | None:
    """The longest interval between consecutive answers from the last answer before t0 on; None if none came
    after t0 (the partitions were never served again within the load)."""
    times = sorted(times)
    before = [t for t in times if t <= t0]
    window = [before[-1] if before else t0, *[t for t in times if t > t0]]
    if len(window) < 2:
        return None
    return max(b - a for a, b in itertools.pairwise(window))


def move_figures(trace: list[list[Any]], signal_wall: float, moved: set[int]) -> dict[str, Any]:
    """The figures of one move from the load's trace ([sent, partition, first answer, answers] per request)."""
    sent = len(trace)
    answered = [r for r in trace if r[2] is not None]
    on_moved = [r for r in trace if r[1] in moved]
    on_kept = [r for r in trace if r[1] is not None and r[1] not in moved]
    after = [r[2] for r in on_moved if r[0] >= signal_wall and r[2] is not None]
    last_sent = max((r[0] for r in trace), default=signal_wall)

    def gap(rows: list[list[Any]]) -> float | None:
        found = _longest_gap([r[2] for r in rows if r[2] is not None], signal_wall)
        return None if found is None else round(found, 2)

    def worst_ms(rows: list[list[Any]]) -> float | None:
        waits = [(r[2] - r[0]) * 1000 for r in rows if r[2] is not None]
        return round(max(waits), 0) if waits else None

    return {
        "sent": sent,
        "answered": len(answered),
        "lost": sent - len(answered),
        "duplicates": sum(max(0, r[3] - 1) for r in trace),
        "requests_answered_twice_or_more": sum(1 for r in trace if r[3] > 1),
        "partition_unknown": sum(1 for r in trace if r[1] is None),
        "moved_partitions": sorted(moved),
        "sent_to_moved": len(on_moved),
        "move_s": round(min(after) - signal_wall, 2) if after else None,
        "longest_gap_moved_s": gap(on_moved),
        "longest_gap_kept_s": gap(on_kept),
        "worst_wait_moved_ms": worst_ms(on_moved),
        "worst_wait_kept_ms": worst_ms(on_kept),
        "signal_at_s": round(signal_wall - min((r[0] for r in trace), default=signal_wall), 2),
        "load_after_signal_s": round(last_sent - signal_wall, 2),
    }

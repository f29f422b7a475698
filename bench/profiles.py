"""Summaries of py-spy's raw (collapsed) profiles: where each process spends its samples.

`python -m bench.profiles FILE…` prints, per file, the functions with the most samples on top of the stack (self)
and the frames of our code and of the libraries that take the most samples beneath them (inclusive).
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

IDLE = re.compile(r"(wait|select|poll|epoll|_wait|sleep|switch|run \(gevent|recv|accept)", re.I)


def read(path: Path) -> Counter[tuple[str, ...]]:
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[tuple(stack.split(";"))] += int(count)
    return stacks


def _short(frame: str) -> str:
    # "function (path/to/module.py:123)" -> "function (module.py)"
    match = re.match(r"(.*) \((.*?):\d+\)$", frame)
    if not match:
        return frame
    name, path = match.groups()
    parts = path.split("site-packages/")[-1].split("/")
    return f"{name} ({'/'.join(parts[-2:])})"


def summary(path: Path, top: int = 18) -> str:
    stacks = read(path)
    total = sum(stacks.values()) or 1
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for stack, count in stacks.items():
        own[_short(stack[-1])] += count
        for frame in {_short(f) for f in stack}:
            inclusive[frame] += count
    lines = [f"== {path.name}: {total} samples"]
    lines.append("  self (top of stack):")
    lines += [f"    {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    lines.append("  inclusive:")
    lines += [f"    {100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(top * 2)]
    return "\n".join(lines)


def main() -> None:
    for name in sys.argv[1:]:
        print(summary(Path(name)))


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# Before/after of bench/proposals/*.patch: the same fixed-rate steps against HEAD and HEAD + the patch, each in a
# copy of the tree under /tmp (the work tree is shared; nothing here touches it). Prints p50/p99 and CPU ms/op.
# Usage: bench/ab.sh [--only W1,R1,H1] [--rates W1=50 …]   (defaults: W1 50/s, R1 100/s, H1 50/s, R2 100/s)
set -euo pipefail
cd "$(dirname "$0")/.."
args=("$@")
[ ${#args[@]} -eq 0 ] && args=(--only W1,R1,H1,R2 --rates W1=50 --rates R1=100 --rates H1=50 --rates R2=100)
base=$(mktemp -d /tmp/vyp-ab.XXXXXX)
trap 'rm -rf "$base"' EXIT
for variant in head patched; do
  mkdir -p "$base/$variant/tree"
  git archive HEAD | tar -x -C "$base/$variant/tree"
  ln -s "$PWD/.venv" "$base/$variant/tree/.venv"
  if [ "$variant" = patched ]; then
    for p in bench/proposals/*.patch; do (cd "$base/$variant/tree" && patch -s -p1 < "$OLDPWD/$p"); done
  fi
done
for variant in head patched; do
  (cd "$base/$variant/tree" && VYP_BENCH_LOG_DIR="$base/$variant/logs" .venv/bin/python -m bench --brokers amqp \
     --step-s 8 "${args[@]}" --out "$base/$variant" >/dev/null 2>"$base/$variant/stderr") || tail -20 "$base/$variant/stderr"
  .venv/bin/python - "$variant" "$base/$variant/results.json" <<'PY'
import json, sys
variant, path = sys.argv[1], sys.argv[2]
for r in json.load(open(path))["results"]:
    s = r["steps"][0]
    ok = max(s["ok"], 1)
    cpu = {k: round(v / ok * 1000, 2) for k, v in s["cpu_s"].items()}
    ours = sum(cpu.get(k, 0) for k in ("web", "worker", "reads", "relay"))
    procs = " ".join(f"{k} {cpu.get(k, 0):.2f}" for k in ("web", "worker", "reads", "relay", "redis", "tansu"))
    print(f"{variant:8} {r['name']:12} {s['rate']:5.0f}/s ok {s['ok']:5} p50 {s['p50_ms']} p99 {s['p99_ms']} "
          f"ours {ours:.2f} ms/op ({procs}) db conns {r.get('db_connections_peak')}")
PY
done

#!/usr/bin/env bash
# History on vs off under the same put load (docs/benchmarks.md, "History recording").
# Alternates a single `cairn` member with --history=false and the default, $ROUNDS rounds (3),
# fresh data dirs, and prints throughput, p99, the history head/lag from /metrics after the
# run, the largest lag seen during it (sampled every 0.5 s), the CPU time the server spent
# (all threads, and the history thread alone) and its peak RSS.
# Needs release builds: cargo build --release -p cairn -p cairn-bench --bin cairn --bin loadgen
set -euo pipefail
B="$(cd "$(dirname "$0")/../.." && pwd)/target/release"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
for round in $(seq 1 "${ROUNDS:-3}"); do
  for history in false true; do
    dir="$WORK/data-$history-$round"
    "$B/cairn" --data-dir "$dir" --listen-client-urls http://127.0.0.1:23790 \
      --listen-peer-urls http://127.0.0.1:23800 --history="$history" --log-level warn \
      >"$WORK/log" 2>&1 &
    pid=$!
    sleep 2
    (max=0; while kill -0 "$pid" 2>/dev/null; do
      lag=$(curl -s http://127.0.0.1:23790/metrics | awk '/^cairn_history_lag_revisions/ {print int($2)}')
      if [ -n "$lag" ] && [ "$lag" -gt "$max" ]; then max=$lag; echo "$max" >"$WORK/max-lag"; fi
      sleep 0.5
    done) &
    "$B/loadgen" put --endpoints 127.0.0.1:23790 --conns 8 --clients 64 --total 60000 \
      --key-size 8 --val-size 256 --key-space-size 100000 --json --no-progress >"$WORK/out.json"
    sleep 2
    metrics=$(curl -s http://127.0.0.1:23790/metrics | grep -E '^cairn_history_(head|lag)' | tr '\n' ' ')
    cpu=$(for task in /proc/"$pid"/task/*; do
      echo "$(tr ' ' _ <"$task/comm") $(awk '{print $14 + $15}' "$task/stat")"
    done | awk '{all += $2; if ($1 == "cairn-history") history += $2}
      END {printf "server CPU %.1f s, history thread %.1f s", all / 100, history / 100}')
    rss=$(awk '/^VmHWM/ {printf "peak RSS %d MiB", $2 / 1024}' /proc/"$pid"/status)
    result=$(python3 -c 'import json,sys; op=json.load(open(sys.argv[1]))["ops"][0]; print(round(op["throughput"]), "req/s, p99", op["latency_ms"]["p99"], "ms")' "$WORK/out.json")
    echo "round $round history=$history: $result; $cpu; $rss; $metrics; max lag $(cat "$WORK/max-lag" 2>/dev/null || echo 0)"
    rm -f "$WORK/max-lag"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
  done
done

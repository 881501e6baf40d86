#!/usr/bin/env bash
# Fleet ingest benchmark: N simulated devices in one process, one `netpulse all` (or
# `collector`) process collecting them, measured from the outside.
#
#   bench/fleet.sh [DEVICES] [SECONDS] [DATABASE_URL] [REDIS_URL]
#
# Reports samples written per second (from the collector's /metrics), the collector
# process's CPU use and resident memory (from /proc), and the write batches' mean
# latency. Targets only loopback, stops by itself after warm-up + SECONDS.
set -euo pipefail
cd "$(dirname "$0")/.."

devices=${1:-200}
seconds=${2:-30}
database_url=${3:-}
redis_url=${4:-}
warmup=15
bin=target/release/netpulse

echo "==> building the release binary" >&2
cargo build --release --bin netpulse --locked >&2

work=$(mktemp -d)
cleanup() {
  kill "${sim_pid:-}" "${np_pid:-}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "==> starting $devices simulated devices" >&2
"$bin" simulate --devices "$devices" --base-address 127.0.100.1 --port 0 \
  --sample-interval 1s --write-devices "$work/devices.yaml" >"$work/sim.log" 2>&1 &
sim_pid=$!
for _ in $(seq 1 600); do
  grep -q "simulated devices running" "$work/sim.log" && break
  sleep 0.1
done

args=(all --devices "$work/devices.yaml" --listen 127.0.0.1:0
  --database-url "${database_url:-sqlite:$work/bench.db}")
[ -n "$redis_url" ] && args+=(--redis-url "$redis_url" --bus-prefix "bench-$$")
echo "==> starting netpulse ${args[*]}" >&2
RUST_LOG=warn "$bin" "${args[@]}" >"$work/np.log" 2>&1 &
np_pid=$!
url=""
for _ in $(seq 1 600); do
  url=$(grep -Eo 'http://[0-9.:]+' "$work/np.log" | head -n 1 || true)
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "$url" ] || { cat "$work/np.log" >&2; exit 1; }

metric() { # name -> value (sum over label sets)
  curl -s "$url/metrics" | awk -v m="$1" '$1 == m || index($1, m "{") == 1 { s += $2 } END { print s + 0 }'
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$np_pid/stat"; }
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$np_pid/status"; }

echo "==> warming up ${warmup}s" >&2
sleep "$warmup"
w0=$(metric netpulse_collector_samples_written_total)
b0=$(metric netpulse_collector_batch_seconds_count)
s0=$(metric netpulse_collector_batch_seconds_sum)
c0=$(cpu_ticks)
for i in $(seq 1 "$seconds"); do
  sleep 1
  printf '\r  measuring %d/%ds' "$i" "$seconds" >&2
done
echo >&2
w1=$(metric netpulse_collector_samples_written_total)
b1=$(metric netpulse_collector_batch_seconds_count)
s1=$(metric netpulse_collector_batch_seconds_sum)
c1=$(cpu_ticks)
synced=$(metric 'netpulse_collector_sessions{state="synced"}')
hz=$(getconf CLK_TCK)

awk -v d="$devices" -v t="$seconds" -v w="$((w1 - w0))" -v b="$((b1 - b0))" \
  -v s0="$s0" -v s1="$s1" -v c="$((c1 - c0))" -v hz="$hz" -v rss="$(rss_kib)" \
  -v synced="$synced" 'BEGIN {
  printf "devices=%d synced=%d samples_written_per_s=%.0f cpu_percent=%.1f rss_mib=%.1f batches_per_s=%.1f mean_batch_ms=%.2f\n",
    d, synced, w / t, 100 * c / hz / t, rss / 1024, b / t, (b > 0 ? 1000 * (s1 - s0) / b : 0)
}'

#!/usr/bin/env bash
# gNMI collection benchmarks (issue 3): simulator and collector in separate processes on
# loopback, each scenario bounded in time, one result line per scenario on stdout.
#
#   bench/collector.sh [SCENARIO...]     scenarios: pg sink storm decode pygnmi (default: all)
#
# Environment (defaults in brackets):
#   DEVICES [10000]   fleet of scenarios pg, sink and storm
#   INTERVAL [10s]    sample interval of scenarios pg, sink and storm
#   INTERFACES [16]   interfaces per simulated device
#   SAT_DEVICES [1000] fleet of scenario decode
#   SAT_INTERVAL [250ms] its sample interval (448,000 updates/s with 16 interfaces)
#   PEER_DEVICES [100] devices both pygnmi and netpulse collect in scenario pygnmi (1 s)
#   PG_ADMIN_URL [postgres://postgres@127.0.0.1:5432/postgres]  a throwaway database
#                     netpulse_bench_<pid> is created there for scenario pg, dropped after
#   NO_BUILD=1        use the binaries in target/release as they are
#
# Scenarios:
#   pg      `netpulse collector` with PostgreSQL (in-process bus): written/s, received/s,
#           completeness, CPU, RSS, from its /metrics and /proc.
#   sink    netpulse-bench collect: collector::run in process, counting store, in-process
#           bus: the collector's own CPU, RSS per device, completeness, received/s.
#   storm   after `sink`, the simulator is killed and restarted with the same devices:
#           time until every session is synced again (connect limit 64, the default).
#   decode  the collector on one worker thread (one core), counting store: updates
#           decoded and batched per CPU-second; then, on the same simulator's messages in
#           the same run, the ceilings: prost decode alone (the target's reference),
#           netpulse's own decode (proto::wire) alone, prost + decode_notification.
#   pygnmi  bench/pygnmi_collector.py (one thread per device) and netpulse-bench on the
#           same PEER_DEVICES devices, one after the other: CPU per update.
#
# Needs root (the shared listener binds a raw-capable socket to `lo`); targets only
# 127.0.0.0/8 and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

devices=${DEVICES:-10000}
interfaces=${INTERFACES:-16}
interval=${INTERVAL:-10s}
sat_devices=${SAT_DEVICES:-1000}
sat_interval=${SAT_INTERVAL:-250ms}
peer_devices=${PEER_DEVICES:-100}
pg_admin=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
scenarios=("$@")
[ ${#scenarios[@]} -eq 0 ] && scenarios=(pg sink storm decode pygnmi)
wants() { [[ " ${scenarios[*]} " == *" $1 "* ]]; }

np=target/release/netpulse
harness=target/release/netpulse-bench
python=.venv-test/bin/python
if [ -z "${NO_BUILD:-}" ]; then
  echo "==> building release binaries" >&2
  cargo build --release --locked -p netpulse -p netpulse-bench >&2
fi

work=$(mktemp -d)
db=""
cleanup() {
  for pid in ${sim_pid:-} ${np_pid:-} ${h_pid:-}; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "$db" ] && psql "$pg_admin" -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

hz=$(getconf CLK_TCK)

# start_sim DEVICES INTERVAL: a shared-listener fleet on 127.0.1.1.. port 57400.
start_sim() {
  local n=$1 interval=$2
  echo "==> simulator: $n devices x $interfaces interfaces, sample interval $interval" >&2
  "$np" simulate --devices "$n" --interfaces "$interfaces" --shared-listener --port 57400 \
    --sample-interval "$interval" --write-devices "$work/devices.yaml" >"$work/sim.log" 2>&1 &
  sim_pid=$!
  for _ in $(seq 1 1200); do
    grep -q "simulated devices running" "$work/sim.log" && return 0
    kill -0 "$sim_pid" 2>/dev/null || break
    sleep 0.1
  done
  cat "$work/sim.log" >&2
  return 1
}
stop_sim() {
  kill "$sim_pid" 2>/dev/null || true
  wait "$sim_pid" 2>/dev/null || true
  sim_pid=""
}

# ---- 1a: netpulse collector with PostgreSQL ---------------------------------------
if wants pg; then
  start_sim "$devices" "$interval"
  db="netpulse_bench_$$"
  psql "$pg_admin" -qc "CREATE DATABASE $db" >/dev/null
  db_url="${pg_admin%/*}/$db"
  echo "==> netpulse collector, PostgreSQL database $db" >&2
  RUST_LOG=warn "$np" collector --devices "$work/devices.yaml" --listen 127.0.0.1:0 \
    --database-url "$db_url" >"$work/np.log" 2>&1 &
  np_pid=$!
  url=""
  for _ in $(seq 1 600); do
    url=$(grep -Eo 'http://[0-9.:]+' "$work/np.log" | head -n 1 || true)
    [ -n "$url" ] && break
    sleep 0.1
  done
  [ -n "$url" ] || { cat "$work/np.log" >&2; exit 1; }
  metric() { # name -> value (sum over label sets)
    curl -s "$url/metrics" | awk -v m="$1" '$1 == m || index($1, m "{") == 1 { s += $2 } END { printf "%d", s + 0 }'
  }
  started=$(date +%s.%N)
  for i in $(seq 1 90); do # all synced, at most 90 s
    up=$(($(metric 'netpulse_collector_sessions{state="synced"}') + $(metric 'netpulse_collector_sessions{state="degraded"}')))
    [ "$up" -ge "$devices" ] && break
    [ $((i % 5)) -eq 0 ] && echo "  $up/$devices synced after ${i}s" >&2
    sleep 1
  done
  sync_s=$(echo "$(date +%s.%N) - $started" | bc)
  [ "$up" -ge "$devices" ] || sync_s="-1" # not all synced within 90 s
  echo "  warming up 15s" >&2
  sleep 15
  snap() {
    echo "$(metric netpulse_collector_samples_written_total) $(metric netpulse_collector_samples_received_total)" \
      "$(metric netpulse_collector_samples_expected_total) $(metric netpulse_collector_samples_missing_total)" \
      "$(awk '{ print $14 + $15 }' "/proc/$np_pid/stat") $(date +%s.%N)"
  }
  read -r w0 r0 e0 m0 c0 t0 <<<"$(snap)"
  sleep 40
  read -r w1 r1 e1 m1 c1 t1 <<<"$(snap)"
  rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$np_pid/status")
  synced=$(metric 'netpulse_collector_sessions{state="synced"}')
  queue_full=$(metric netpulse_collector_queue_full_total)
  awk -v d="$devices" -v s="$synced" -v ss="$sync_s" -v w=$((w1 - w0)) -v r=$((r1 - r0)) \
    -v e=$((e1 - e0)) -v m=$((m1 - m0)) -v c=$((c1 - c0)) -v t0="$t0" -v t1="$t1" -v hz="$hz" \
    -v rss="$rss" -v qf="$queue_full" 'BEGIN { t = t1 - t0
    printf "pg devices=%d synced=%d initial_sync_s=%.1f written_per_s=%.0f received_per_s=%.0f expected_per_s=%.0f completeness_pct=%.3f cpu_pct=%.1f rss_mib=%.1f kib_per_device=%.1f queue_full_total=%d window_s=%.1f\n",
      d, s, ss, w / t, r / t, e / t, (e > 0 ? 100 * (1 - m / e) : 0), 100 * c / hz / t, rss / 1024, rss / d, qf, t }'
  kill "$np_pid"
  wait "$np_pid" 2>/dev/null || true
  np_pid=""
  psql "$pg_admin" -qc "DROP DATABASE IF EXISTS $db" >/dev/null
  db=""
  stop_sim
fi

# ---- 1b + 4: counting sink, then the reconnect storm ------------------------------
if wants sink || wants storm; then
  start_sim "$devices" "$interval"
  echo "==> netpulse-bench collect (counting store, in-process bus)" >&2
  storm_args=()
  wants storm && storm_args=(--storm-timeout 120)
  "$harness" collect --devices "$work/devices.yaml" --sync-timeout 90 --warmup 15 \
    --seconds 40 "${storm_args[@]}" >"$work/h.out" &
  h_pid=$!
  if wants storm; then
    until grep -q STORM-READY "$work/h.out"; do
      kill -0 "$h_pid" 2>/dev/null || break
      sleep 0.2
    done
    grep -v STORM "$work/h.out" | sed 's/^/sink /'
    echo "==> storm: killing and restarting the simulator" >&2
    kill -9 "$sim_pid"
    wait "$sim_pid" 2>/dev/null || true
    restarted=$(date +%s.%N)
    start_sim "$devices" "$interval"
    echo "  simulator back after $(echo "$(date +%s.%N) - $restarted" | bc)s" >&2
  fi
  wait "$h_pid" || true
  h_pid=""
  if wants storm; then
    grep '^storm' "$work/h.out" || echo "storm devices=$devices recovered=unknown (no drop seen within 120 s)"
  else
    sed 's/^/sink /' "$work/h.out"
  fi
  stop_sim
fi

# ---- 2: saturation and the decode ceiling, same fleet, same run --------------------
if wants decode; then
  start_sim "$sat_devices" "$sat_interval"
  echo "==> decode-and-batch: $sat_devices devices at $sat_interval, one worker thread" >&2
  "$harness" --workers 1 collect --devices "$work/devices.yaml" --sync-timeout 60 --warmup 10 \
    --seconds 30 | sed 's/^/saturation /'
  echo "==> decode ceiling on the same simulator" >&2
  "$harness" decode --devices "$work/devices.yaml" --seconds 5
  stop_sim
fi

# ---- 3: pygnmi peer and netpulse on the same devices ------------------------------
if wants pygnmi; then
  start_sim "$peer_devices" 1s
  echo "==> pygnmi on $peer_devices devices" >&2
  timeout 150 "$python" bench/pygnmi_collector.py "$work/devices.yaml" "$peer_devices" 10 30 1
  echo "==> netpulse-bench on the same $peer_devices devices" >&2
  "$harness" collect --devices "$work/devices.yaml" --limit "$peer_devices" --sync-timeout 60 \
    --warmup 10 --seconds 30 | sed 's/^/netpulse-peer /'
  stop_sim
fi

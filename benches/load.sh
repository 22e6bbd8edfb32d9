#!/usr/bin/env bash
# Load benchmark: roost's /auth (cached valid token) against the floor, a
# bare hyper server answering 200, under the same load generator (wrk), the
# same concurrency and the same CPU pinning, in one run, alternating floor
# and roost each round. Prints throughput and p99 latency of each, and
# roost's as a ratio of the floor's, for two loads:
#   - saturated: CONNS connections (default 32) keep the server's core busy;
#     throughput is the figure, p99 there is mostly queueing (Little's law);
#   - light: LIGHT_CONNS connections (default 1), the core not saturated;
#     p99 there is the round trip a request sees.
#
#   benches/load.sh            # defaults: 4 rounds x 10 s
#   DURATION=20 ROUNDS=2 benches/load.sh
#
# Pinning: servers on CPU 1, wrk on CPU 0 (this machine has 2 cores).
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
cd "$ROOT"

DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
LIGHT_CONNS=${LIGHT_CONNS:-1}
ROUNDS=${ROUNDS:-4}
SERVER_CPU=${SERVER_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}

need_apt wrk curl
RUN=load-$$
bench_setup "$RUN" floor mint_token

bench_issuer
token=$(bench_token alice)
# alice's workspace is started by the first request; every later /auth is the
# hot path: cached token, ready workspace, decided from memory.
bench_roost "$SERVER_CPU" "image = \"roost-echo:nohealth\"
labels = { \"roost-bench.run\" = \"$RUN\" }"
roost_addr=$ROOST_ADDR

taskset -c "$SERVER_CPU" target/release/examples/floor >"$work/floor.log" 2>&1 &
pids+=($!)
floor_addr=$(wait_for_line "$work/floor.log" 'listening on' 10 | awk '{print $3}') || die "floor did not start"

# Sanity: roost says yes to this request (the first one starts alice's workspace).
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" \
  -H "X-Forwarded-Host: alice.ws.roost.test" -H "X-Forwarded-For: 203.0.113.9" "http://$roost_addr/auth")
[ "$code" = 200 ] || die "roost answered $code to the benchmark request"

# run LOAD CONNS NAME URL: one wrk run; appends "LOAD NAME rps p99_us" to $work/results.
run() {
  local load=$1 conns=$2 name=$3 url=$4 out
  out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$conns" -d"${DURATION}s" --latency \
    -H "Authorization: Bearer $token" -H "X-Forwarded-Host: alice.ws.roost.test" \
    -H "X-Forwarded-For: 203.0.113.9" -H "X-Forwarded-Proto: https" -H "X-Forwarded-Uri: /lab" \
    "$url")
  if grep -q 'Non-2xx' <<<"$out"; then die "$name: non-2xx answers under load: $out"; fi
  [ -n "${VERBOSE:-}" ] && printf '%s\n' "$out" >&2
  local rps p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us$/,"",v); print v} else if (v ~ /ms$/) {sub(/ms$/,"",v); print v*1000} else {sub(/s$/,"",v); print v*1000000}}' <<<"$out")
  printf '%-9s %-6s round %d: %10.0f req/s  p99 %8.1f us\n' "$load" "$name" "$round" "$rps" "$p99" >&2
  echo "$load $name $rps $p99" >>"$work/results"
}

log "warm-up"
DURATION=2 round=0 run warmup "$CONNS" floor "http://$floor_addr/auth"
DURATION=2 round=0 run warmup "$CONNS" roost "http://$roost_addr/auth"
: >"$work/results"
log "measuring: $ROUNDS rounds x ${DURATION}s; servers on CPU $SERVER_CPU, wrk on CPU $LOAD_CPU"
for round in $(seq 1 "$ROUNDS"); do
  run saturated "$CONNS" floor "http://$floor_addr/auth"
  run saturated "$CONNS" roost "http://$roost_addr/auth"
  run light "$LIGHT_CONNS" floor "http://$floor_addr/auth"
  run light "$LIGHT_CONNS" roost "http://$roost_addr/auth"
done

awk -v conns="$CONNS" -v light="$LIGHT_CONNS" '
  { k = $1 " " $2; rps[k] += $3; p99[k] += $4; n[k]++ }
  function avg(a, k) { return a[k] / n[k] }
  END {
    printf "\n%-44s %12s %12s\n", "", "req/s", "p99 (us)"
    split("saturated light", loads, " ")
    for (i = 1; i <= 2; i++) {
      l = loads[i]; c = (l == "saturated") ? conns : light
      printf "%-44s %12.0f %12.1f\n", l " (" c " conns): floor, bare hyper 200", avg(rps, l " floor"), avg(p99, l " floor")
      printf "%-44s %12.0f %12.1f\n", l " (" c " conns): roost /auth, cached token", avg(rps, l " roost"), avg(p99, l " roost")
    }
    printf "\nroost / floor, saturated: throughput %.3fx (target >= 0.85), p99 %.3fx (target <= 1.2)\n", avg(rps, "saturated roost") / avg(rps, "saturated floor"), avg(p99, "saturated roost") / avg(p99, "saturated floor")
    printf "roost / floor, light:     throughput %.3fx, p99 %.3fx (target <= 1.2)\n", avg(rps, "light roost") / avg(rps, "light floor"), avg(p99, "light roost") / avg(p99, "light floor")
  }' "$work/results"

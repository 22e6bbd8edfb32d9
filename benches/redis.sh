#!/usr/bin/env bash
# The hot path does not touch Redis: /auth with a cached token for a ready
# workspace, the same release binary without and with ROOST_REDIS_URL (a
# local redis-server with a password), side by side in one run, alternating
# each round under the same load generator (wrk) and CPU pinning. Prints
# throughput and p99 of each and the ratio (target >= 0.95).
#
#   benches/redis.sh            # defaults: 4 rounds x 10 s, 32 connections
#   DURATION=20 ROUNDS=2 benches/redis.sh
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
cd "$ROOT"

DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
ROUNDS=${ROUNDS:-4}
SERVER_CPU=${SERVER_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}

need_apt wrk curl redis-server
RUN=redis-$$
bench_setup "$RUN" mint_token

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --requirepass bench-redis-password --save "" \
  --appendonly no >"$work/redis.log" 2>&1 &
pids+=($!)
wait_for_line "$work/redis.log" 'Ready to accept connections' 10 >/dev/null || die "redis did not start"

bench_issuer
token=$(bench_token alice)
workspace="image = \"roost-echo:nohealth\"
labels = { \"roost-bench.run\" = \"$RUN\" }"
bench_roost "$SERVER_CPU" "$workspace" alone
alone=$ROOST_ADDR
ROOST_REDIS_URL="redis://:bench-redis-password@127.0.0.1:$redis_port/0" bench_roost "$SERVER_CPU" "$workspace" shared
shared=$ROOST_ADDR
grep -q 'store="redis"\|store=redis' "$work/shared.log" || die "the second roost does not use Redis: $(cat "$work/shared.log")"

for addr in "$alone" "$shared"; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" \
    -H "X-Forwarded-Host: alice.ws.roost.test" -H "X-Forwarded-For: 203.0.113.9" "http://$addr/auth")
  [ "$code" = 200 ] || die "roost at $addr answered $code to the benchmark request"
done

run() {
  local name=$1 url=$2 out
  out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency \
    -H "Authorization: Bearer $token" -H "X-Forwarded-Host: alice.ws.roost.test" \
    -H "X-Forwarded-For: 203.0.113.9" -H "X-Forwarded-Proto: https" -H "X-Forwarded-Uri: /lab" "$url")
  if grep -q 'Non-2xx' <<<"$out"; then die "$name: non-2xx answers under load: $out"; fi
  local rps p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us$/,"",v); print v} else if (v ~ /ms$/) {sub(/ms$/,"",v); print v*1000} else {sub(/s$/,"",v); print v*1000000}}' <<<"$out")
  printf '%-14s round %d: %10.0f req/s  p99 %8.1f us\n' "$name" "$round" "$rps" "$p99" >&2
  echo "$name $rps $p99" >>"$work/results"
}

log "warm-up"
DURATION=2 round=0 run alone "http://$alone/auth"
DURATION=2 round=0 run redis "http://$shared/auth"
: >"$work/results"
log "measuring: $ROUNDS rounds x ${DURATION}s, $CONNS connections; roost on CPU $SERVER_CPU, wrk on CPU $LOAD_CPU"
for round in $(seq 1 "$ROUNDS"); do
  run alone "http://$alone/auth"
  run redis "http://$shared/auth"
done
awk '
  { rps[$1] += $2; p99[$1] += $3; n[$1]++ }
  END {
    printf "\n%-40s %12s %12s\n", "", "req/s", "p99 (us)"
    printf "%-40s %12.0f %12.1f\n", "roost /auth, embedded store", rps["alone"] / n["alone"], p99["alone"] / n["alone"]
    printf "%-40s %12.0f %12.1f\n", "roost /auth, ROOST_REDIS_URL set", rps["redis"] / n["redis"], p99["redis"] / n["redis"]
    printf "\nwith Redis / without: throughput %.3fx (target >= 0.95), p99 %.3fx\n", (rps["redis"] / n["redis"]) / (rps["alone"] / n["alone"]), (p99["redis"] / n["redis"]) / (p99["alone"] / n["alone"])
  }' "$work/results"

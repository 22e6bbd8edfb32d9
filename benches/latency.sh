#!/usr/bin/env bash
# Tail latency at a fixed request rate: roost's /auth (cached token, ready
# workspace) against the floor (a bare hyper server answering 200), each
# driven by oha at the same fixed rates (-q, with --latency-correction, so a
# stall counts against every request it delays, as wrk2 does). At a fixed
# rate below saturation p99 is what a request sees, not how deep the queue
# of a saturated machine was, so these figures hold from one run to the next.
# Prints p50, p99 and p99.9 of each and roost's ratios to the floor.
#
#   benches/latency.sh                      # rates 1000 5000 20000 req/s, 3 rounds x 10 s
#   RATES="2000 10000" ROUNDS=5 benches/latency.sh
# Pinning: servers on CPU 1, oha on CPU 0.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
cd "$ROOT"

RATES=${RATES:-1000 5000 20000}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-16}
RUN=lat-$$

need_apt curl
# oha: a wrk2-style load generator (fixed rate, latency correction).
OHA=$(command -v oha || echo "$HOME/.cargo/bin/oha")
if ! [ -x "$OHA" ]; then
  log "installing oha (cargo install, once)"
  cargo install oha --locked --quiet
fi
bench_setup "$RUN" floor mint_token

bench_issuer
token=$(bench_token alice)
bench_roost 1 "image = \"roost-echo:nohealth\"
labels = { \"roost-bench.run\" = \"$RUN\" }"
roost=$ROOST_ADDR
taskset -c 1 target/release/examples/floor >"$work/floor.log" 2>&1 &
pids+=($!)
floor=$(wait_for_line "$work/floor.log" 'listening on' 10 | awk '{print $3}') || die "floor did not start"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" \
  -H "X-Forwarded-Host: alice.ws.roost.test" "http://$roost/auth")
[ "$code" = 200 ] || die "roost answered $code: $(tail -5 "$work/roost.log")"

run() { # run NAME ADDR RATE
  taskset -c 0 "$OHA" -z "${DURATION}s" -q "$3" --latency-correction -c "$CONNS" --no-tui --output-format json \
    -H "Authorization: Bearer $token" -H "X-Forwarded-Host: alice.ws.roost.test" -H "X-Forwarded-For: 203.0.113.9" \
    "http://$2/auth" >"$work/oha.json"
  python3 - "$1" "$3" "$round" "$work/oha.json" >>"$work/results" <<'PY'
import json, sys
name, rate, rnd, path = sys.argv[1:]
d = json.load(open(path))
codes = d.get("statusCodeDistribution", {})
# The requests in flight when the run's time is up are cut, not failed.
errors = {k: v for k, v in d.get("errorDistribution", {}).items() if k != "aborted due to deadline"}
bad = sum(v for k, v in codes.items() if k != "200") + sum(errors.values())
if bad:
    sys.exit(f"{name} at {rate}/s: {bad} answers not 200: {codes} {errors}")
p = d["latencyPercentiles"]
us = lambda k: p[k] * 1e6
print(f"{name} {rate} {d['summary']['requestsPerSec']:.0f} {us('p50'):.1f} {us('p99'):.1f} {us('p99.9'):.1f}")
print(f"{name:6} {rate:>6}/s round {rnd}: {d['summary']['requestsPerSec']:8.0f} req/s  p50 {us('p50'):8.1f} us  p99 {us('p99'):8.1f} us  p99.9 {us('p99.9'):8.1f} us", file=sys.stderr)
PY
}
log "warm-up"
round=0 DURATION=2 run floor "$floor" 5000
round=0 DURATION=2 run roost "$roost" 5000
: >"$work/results"
log "measuring: rates $RATES req/s, $ROUNDS rounds x ${DURATION}s, $CONNS connections"
for round in $(seq 1 "$ROUNDS"); do
  for rate in $RATES; do
    if [ $((round % 2)) = 1 ]; then run floor "$floor" "$rate"; run roost "$roost" "$rate"
    else run roost "$roost" "$rate"; run floor "$floor" "$rate"; fi
  done
done
awk '
  { k = $1 " " $2; got[k] += $3; p50[k] += $4; p99[k] += $5; p999[k] += $6; n[k]++; if (!($2 in seen)) { seen[$2] = 1; rates[++r] = $2 } }
  function a(x, k) { return x[k] / n[k] }
  END {
    printf "\n%-8s %-7s %10s %10s %10s %10s\n", "rate/s", "server", "got/s", "p50 us", "p99 us", "p99.9 us"
    for (i = 1; i <= r; i++) {
      f = "floor " rates[i]; o = "roost " rates[i]
      printf "%-8s %-7s %10.0f %10.1f %10.1f %10.1f\n", rates[i], "floor", a(got,f), a(p50,f), a(p99,f), a(p999,f)
      printf "%-8s %-7s %10.0f %10.1f %10.1f %10.1f\n", "", "roost", a(got,o), a(p50,o), a(p99,o), a(p999,o)
      printf "%-8s %-7s %10s %9.2fx %9.2fx %9.2fx\n", "", "ratio", "", a(p50,o)/a(p50,f), a(p99,o)/a(p99,f), a(p999,o)/a(p999,f)
    }
  }' "$work/results"

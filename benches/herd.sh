#!/usr/bin/env bash
# The herd, through the real Traefik: N new users (default 100) each send C
# (default 10) concurrent first requests, all N x C at once, to one release
# roost behind Traefik (roost's HTTP provider, polled every second, and its
# fallback router; the requests are the echo workspace's /healthz, image
# roost-echo:nohealth, each with its user's bearer token and Host
# <user>.ws.roost.test). No user has a workspace yet, so every request goes
# Traefik -> roost's fallback proxy, which starts the user's container and
# holds the request until it answers. The load generator is
# examples/herd.rs: every connection opened first, then all requests sent
# at once; TTFB is from writing a request to its answer's first byte.
#
# In the same run, first, the raw engine: the same N containers made
# straight through the Docker API, all at once (examples/raw_engine.rs
# --concurrent: volume + create + start + first HTTP 200, shaped as roost's
# on a network of their own, polled with roost's back-off).
#
# Prints: containers roost created (must be N), errors (non-2xx or transport
# errors; must be 0), p50/p99 of the TTFB and the wall time, the raw side's
# p50/p99 of the time to first 200 and its wall time, and roost / raw for
# p50 and p99. Exits 1 when the containers are not N or there are errors.
#
#   benches/herd.sh                 # 100 users x 10 requests
#   N=5 C=3 benches/herd.sh
#   SPAWNS=4 benches/herd.sh        # roost's default max_concurrent_spawns
# SPAWNS is roost's workspace.max_concurrent_spawns: by default N (at most
# 1000), so roost, like the raw side, starts them all at once.
# No pinning: roost, Traefik, the engine and the load share every CPU.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
cd "$ROOT"

N=${N:-100}
C=${C:-10}
SPAWNS=${SPAWNS:-$((N < 1000 ? N : 1000))}
IMAGE=roost-echo:nohealth
RUN=herd-$$

need_apt curl
need_venv
bench_setup "$RUN" herd raw_engine
# The raw side removes what it made; its network and anything left after a
# failure go here too.
trap 'bench_cleanup "$RUN"; docker network rm "raw-$RUN" >/dev/null 2>&1 || true' EXIT

# pct P FILE: the P-th percentile (nearest rank) of FILE's numbers.
pct() { sort -n "$2" | awk -v p="$1" '{a[NR] = $1} END {i = int(p / 100 * NR); if (i < p / 100 * NR) i++; if (i < 1) i = 1; print a[i]}'; }

# --- raw engine (examples/raw_engine.rs --concurrent: bollard, no roost) -----
log "raw engine: $N x (volume + create + start + first 200), all at once"
target/release/examples/raw_engine --concurrent "$IMAGE" "$N" "$RUN" >"$work/raw" ||
  die "raw engine failed"
grep -v '^wall' "$work/raw" >"$work/raw-spawn"
raw_wall=$(awk '/^wall/ {print $2}' "$work/raw")
[ "$(wc -l <"$work/raw-spawn")" = "$N" ] || die "raw engine: $(wc -l <"$work/raw-spawn") of $N"
[ -z "$(docker ps -aq --filter "label=roost-bench.run=$RUN")" ] || die "raw engine left containers behind"
sleep 2 # let the engine settle after removing them

# --- roost behind Traefik ----------------------------------------------------
bench_issuer
public="127.0.0.1:$(free_port)"
# Internal listener on a known port (Traefik's provider and forwardAuth name
# it); the public one is where Traefik's fallback router sends workspace hosts.
BENCH_INTERNAL="127.0.0.1:$(free_port)" BENCH_LISTEN="$public" BENCH_ROOST_URL="http://$public" \
  BENCH_ROUTING='entrypoints = ["web"]' bench_roost 0-1 "image = \"$IMAGE\"
idle_timeout = \"1h\"
max_running = $((N < 100 ? 200 : 2 * N))
max_concurrent_spawns = $SPAWNS
labels = { \"roost-bench.run\" = \"$RUN\" }"
roost=$ROOST_ADDR
[ "$ROOST_PUBLIC" = "$public" ] || die "roost's public listener is $ROOST_PUBLIC, not $public"
target/release/roost check-config --config "$work/roost.toml" >"$work/check.log" 2>&1 ||
  die "check-config: $(cat "$work/check.log")"

web="127.0.0.1:$(free_port)"
"$VENV/bin/traefik" --entryPoints.web.address="$web" \
  --providers.http.endpoint="http://$roost/traefik" --providers.http.pollInterval=1s \
  --log.level=ERROR >"$work/traefik.log" 2>&1 &
pids+=($!)
# Traefik has roost's fallback router once a workspace host reaches roost
# (401 without a token) instead of Traefik's own 404.
deadline=$((SECONDS + 30))
until code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: nobody.ws.roost.test" "http://$web/healthz") &&
  [ "$code" != 404 ] && [ "$code" != 000 ]; do
  [ $SECONDS -lt $deadline ] || die "traefik did not route to roost: $(tail -5 "$work/traefik.log")"
  sleep 0.1
done
[ "$code" = 401 ] || die "a workspace host without a token got $code, not roost's 401"

log "roost through Traefik: $N new users x $C concurrent first requests, all at once"
target/release/examples/herd --issuer "$ISSUER" --traefik "$web" --prefix "$RUN" \
  --users "$N" --concurrency "$C" >"$work/herd" 2>"$work/herd.err" || die "herd failed: $(cat "$work/herd.err")"
grep -v '^wall' "$work/herd" >"$work/requests"
roost_wall=$(awk '/^wall/ {print $2}' "$work/herd")
awk '{print $2}' "$work/requests" >"$work/ttfb"
requests=$(wc -l <"$work/requests")
errors=$(awk '$3 < 200 || $3 > 299' "$work/requests" | wc -l)
containers=$(docker ps -aq --filter "label=roost-bench.run=$RUN" | wc -l)
metric() { curl -s "http://$roost/metrics" | awk -v m="$1" 'index($0, m) == 1 {s += $NF} END {print s + 0}'; }
proxied=$(metric roost_proxy_requests_total)
failures=$(metric roost_workspace_failures_total)

rp50=$(pct 50 "$work/ttfb"); rp99=$(pct 99 "$work/ttfb")
wp50=$(pct 50 "$work/raw-spawn"); wp99=$(pct 99 "$work/raw-spawn")
printf '\nthe herd: %d new users x %d concurrent first requests (%d at once), %s, %d CPUs, max_concurrent_spawns %d\n' \
  "$N" "$C" "$((N * C))" "$(date +%Y-%m-%d)" "$(nproc)" "$SPAWNS"
printf '\n%-58s %6s %9s %9s %9s\n' "" "count" "p50 ms" "p99 ms" "wall ms"
printf '%-58s %6d %9s %9s %9s\n' "roost via Traefik: TTFB of the first requests" "$requests" "$rp50" "$rp99" "$roost_wall"
printf '%-58s %6d %9s %9s %9s\n' "raw engine: volume + create + start + first 200, at once" "$N" "$wp50" "$wp99" "$raw_wall"
printf '\n%-58s %6d (expected %d)\n' "containers roost created" "$containers" "$N"
printf '%-58s %6d\n' "errors (non-2xx or transport)" "$errors"
printf '%-58s %6d\n' "served by roost's fallback proxy" "$proxied"
printf '%-58s %6d\n' "workspace starts that failed (roost's metric)" "$failures"
awk -v a="$rp50" -v b="$wp50" -v c="$rp99" -v d="$wp99" -v e="$roost_wall" -v f="$raw_wall" 'BEGIN {
  printf "\nroost / raw: p50 %.2fx, p99 %.2fx, wall %.2fx\n", a / b, c / d, e / f }'

ok=1
if [ "$errors" != 0 ]; then
  ok=0
  awk '{print $3}' "$work/requests" | sort | uniq -c | sort -rn >&2
  cat "$work/herd.err" >&2
  grep -E 'WARN|ERROR' "$work/roost.log" | tail -10 >&2 || true
fi
[ "$containers" = "$N" ] || ok=0
[ "$ok" = 1 ] || die "the herd did not pass: $containers containers of $N, $errors errors"

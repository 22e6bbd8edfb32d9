#!/usr/bin/env bash
# Load benchmark through the real Traefik: one run, one wrk, the same pinning,
# five routes to the same workspace (alice's, started by roost):
#   none          - Traefik -> workspace, no middleware;
#   floor         - forwardAuth to a bare hyper server answering 200 with no
#                   headers, the middleware given its address only: the
#                   bare limit of a forwardAuth hop;
#   floor-headers - the same server answering with roost's three identity
#                   headers, which Traefik copies (authResponseHeaders);
#   +strip, +regex, +cookies, +cap
#                 - floor-headers plus one more of roost's middleware settings:
#                   Authorization and Cookie in authResponseHeaders (so the
#                   workspace never sees the user's credentials), the alias
#                   regex (authResponseHeadersRegex), addAuthCookiesToResponse,
#                   maxResponseBodySize (4 KiB, roost's; +cap64k: the 64 KiB
#                   roost had before): what each one costs by itself;
#   floor-roost   - that server behind every setting of roost's middleware;
#   roost         - roost's own `ws-alice` router from its HTTP provider
#                   (/traefik), forwardAuth to roost (cached token).
# The request is the workspace's /healthz (a fixed answer), so what differs is
# only the forwardAuth hop. Prints req/s, p50 and p99 of each, the cost of
# each feature against the floor, and roost's ratios against the floor
# (targets: throughput >= 0.95x, p50 <= 1.05x).
#
#   benches/traefik.sh            # 10 rounds x 5 s, 16 connections
#   ROUNDS=20 DURATION=5 CONNS=16 benches/traefik.sh
# Pinning: Traefik, the auth servers and the workspace on CPU 1; wrk on CPU 0.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
cd "$ROOT"

DURATION=${DURATION:-5}
CONNS=${CONNS:-16}
# Many short rounds: this VM's throughput drifts by up to 2x over minutes,
# so alternating often matters more than measuring long.
ROUNDS=${ROUNDS:-10}
RUN=tbench-$$
SETUPS=(none floor floor-headers +strip +regex +cookies +cap +cap64k floor-roost roost)

need_apt wrk curl
need_venv
bench_setup "$RUN" floor mint_token

bench_issuer
token=$(bench_token alice)
# roost's internal listener on a known port: its routes name it for Traefik.
BENCH_INTERNAL="127.0.0.1:$(free_port)" BENCH_ROUTING='entrypoints = ["web"]' \
  bench_roost 1 "image = \"roost-echo:nohealth\"
labels = { \"roost-bench.run\" = \"$RUN\" }"
roost=$ROOST_ADDR
# alice's workspace, started by roost; its address from roost's route table.
deadline=$((SECONDS + 60))
until [ "$(curl -s -o /dev/null -w '%{http_code}' -H "X-Forwarded-Host: alice.ws.roost.test" \
  -H "Authorization: Bearer $token" "http://$roost/auth")" = 200 ]; do
  [ $SECONDS -lt $deadline ] || die "alice's workspace did not start: $(tail -5 "$work/roost.log")"
  sleep 0.2
done
ws=$(curl -s "http://$roost/traefik" | python3 -c \
  'import json,sys; print(json.load(sys.stdin)["http"]["services"]["ws-alice"]["loadBalancer"]["servers"][0]["url"])')
taskset -cp 1 "$(docker inspect -f '{{.State.Pid}}' "$(docker ps -q --filter "label=roost-bench.run=$RUN")")" >/dev/null

taskset -c 1 target/release/examples/floor >"$work/floor.log" 2>&1 &
pids+=($!)
floor=$(wait_for_line "$work/floor.log" 'listening on' 10 | awk '{print $3}') || die "floor"
taskset -c 1 target/release/examples/floor --identity-headers >"$work/floor-h.log" 2>&1 &
pids+=($!)
floor_h=$(wait_for_line "$work/floor-h.log" 'listening on' 10 | awk '{print $3}') || die "floor"

# The file provider: the comparison routes. roost's own comes from its HTTP provider.
cat >"$work/dynamic.yml" <<YML
http:
  middlewares:
    floor:
      forwardAuth: { address: "http://$floor/auth" }
    floor-headers:
      forwardAuth:
        address: "http://$floor_h/auth"
        authResponseHeaders: ["X-Roost-User", "X-Roost-Workspace", "X-Roost-Email"]
    strip:
      forwardAuth:
        address: "http://$floor_h/auth"
        authResponseHeaders: ["X-Roost-User", "X-Roost-Workspace", "X-Roost-Email", "Authorization", "Cookie"]
    regex:
      forwardAuth:
        address: "http://$floor_h/auth"
        authResponseHeaders: ["X-Roost-User", "X-Roost-Workspace", "X-Roost-Email"]
        authResponseHeadersRegex: "^(?i)x[^a-z0-9]roost[^a-z0-9]"
    cookies:
      forwardAuth:
        address: "http://$floor_h/auth"
        authResponseHeaders: ["X-Roost-User", "X-Roost-Workspace", "X-Roost-Email"]
        addAuthCookiesToResponse: ["roost_session"]
    cap:
      forwardAuth:
        address: "http://$floor_h/auth"
        authResponseHeaders: ["X-Roost-User", "X-Roost-Workspace", "X-Roost-Email"]
        maxResponseBodySize: 4096
    cap64k:
      forwardAuth:
        address: "http://$floor_h/auth"
        authResponseHeaders: ["X-Roost-User", "X-Roost-Workspace", "X-Roost-Email"]
        maxResponseBodySize: 65536
    floor-roost:
      forwardAuth:
        address: "http://$floor_h/auth"
        addAuthCookiesToResponse: ["roost_session"]
        authResponseHeaders: ["X-Roost-User", "X-Roost-Workspace", "X-Roost-Email", "Authorization", "Cookie"]
        authResponseHeadersRegex: "^(?i)x[^a-z0-9]roost[^a-z0-9]"
        maxResponseBodySize: 4096
  routers:
YML
for s in "${SETUPS[@]}"; do
  [ "$s" = roost ] && continue
  m=${s#+}
  mw=""; [ "$s" = none ] || mw=", middlewares: [$m]"
  echo "    $m: { rule: \"Host(\`$m.ws.roost.test\`)\", service: ws, entryPoints: [web], priority: 1000$mw }" >>"$work/dynamic.yml"
done
cat >>"$work/dynamic.yml" <<YML
  services:
    ws: { loadBalancer: { servers: [{ url: "$ws" }] } }
YML
web="127.0.0.1:$(free_port)"
taskset -c 1 "$VENV/bin/traefik" --entryPoints.web.address="$web" --providers.file.filename="$work/dynamic.yml" \
  --providers.http.endpoint="http://$roost/traefik" --providers.http.pollInterval=1s \
  --log.level=ERROR >"$work/traefik.log" 2>&1 &
pids+=($!)
host_of() { [ "$1" = roost ] && echo alice.ws.roost.test || echo "${1#+}.ws.roost.test"; }
for s in "${SETUPS[@]}"; do
  deadline=$((SECONDS + 30))
  until [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $(host_of "$s")" -H "Authorization: Bearer $token" "http://$web/healthz")" = 200 ]; do
    [ $SECONDS -lt $deadline ] || die "traefik did not route $s: $(tail -5 "$work/traefik.log")"
    sleep 0.1
  done
done
# roost's route is its own router straight to the container, not the fallback.
curl -s -H "Authorization: Bearer $token" -H "Host: alice.ws.roost.test" "http://$web/healthz" -o /dev/null
[ "$(curl -s "http://$roost/metrics" | awk '/^roost_requests_total.*endpoint="proxy"/ {s += $2} END {print s + 0}')" = 0 ] \
  || die "alice's requests went through roost's fallback proxy"

run() { # run SETUP
  local out
  out=$(taskset -c 0 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -H "Host: $(host_of "$1")" \
    -H "Authorization: Bearer $token" "http://$web/healthz")
  if grep -q 'Non-2xx' <<<"$out"; then die "$1: non-2xx answers: $out"; fi
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  to_us='{v=$2; if (v ~ /us$/) {sub(/us$/,"",v); print v} else if (v ~ /ms$/) {sub(/ms$/,"",v); print v*1000} else {sub(/s$/,"",v); print v*1000000}}'
  p50=$(awk '$1 == "50%"'" $to_us" <<<"$out")
  p99=$(awk '$1 == "99%"'" $to_us" <<<"$out")
  printf '%-14s round %2d: %9.0f req/s  p50 %8.1f us  p99 %8.1f us\n' "$1" "$round" "$rps" "$p50" "$p99" >&2
  echo "$1 $rps $p50 $p99" >>"$work/results"
}
log "warm-up"
round=0
for s in "${SETUPS[@]}"; do DURATION=2 run "$s"; done
: >"$work/results"
log "measuring: $ROUNDS rounds x ${DURATION}s, $CONNS connections"
for round in $(seq 1 "$ROUNDS"); do
  # Alternate the order so no setup always runs right after the same one.
  order=("${SETUPS[@]}")
  if [ $((round % 2)) = 0 ]; then for ((i = 0; i < ${#SETUPS[@]}; i++)); do order[i]=${SETUPS[${#SETUPS[@]} - 1 - i]}; done; fi
  for s in "${order[@]}"; do run "$s"; done
done
awk '
  { rps[$1] += $2; p50[$1] += $3; p99[$1] += $4; n[$1]++; r[$1, n[$1]] = $2; l[$1, n[$1]] = $3 }
  function a(x, k) { return x[k] / n[k] }
  function row(label, k) { printf "%-58s %9.0f %9.1f %9.1f %8.3fx %8.3fx\n", label, a(rps,k), a(p50,k), a(p99,k), a(rps,k)/a(rps,"floor"), a(p50,k)/a(p50,"floor") }
  END {
    lo = 1e9; hi = 0; llo = 1e9; lhi = 0
    for (i = 1; i <= n["roost"]; i++) {
      q = r["roost", i] / r["floor", i]; if (q < lo) lo = q; if (q > hi) hi = q
      q = l["roost", i] / l["floor", i]; if (q < llo) llo = q; if (q > lhi) lhi = q
    }
    printf "\n%-58s %9s %9s %9s %9s %9s\n", "route through Traefik", "req/s", "p50 us", "p99 us", "req/s x", "p50 x"
    row("no middleware", "none")
    row("forwardAuth to a bare 200, no headers (the floor)", "floor")
    row("  + three identity headers copied (floor-headers)", "floor-headers")
    row("    + Authorization, Cookie stripped", "+strip")
    row("    + alias regex (authResponseHeadersRegex)", "+regex")
    row("    + addAuthCookiesToResponse", "+cookies")
    row("    + maxResponseBodySize 4 KiB, as roost sets it", "+cap")
    row("    + maxResponseBodySize 64 KiB, as roost had it", "+cap64k")
    row("  + every setting of roost middleware", "floor-roost")
    row("roost: its own ws-alice router, forwardAuth to roost", "roost")
    printf "\nroost / floor: throughput %.3fx (target >= 0.95), p50 %.3fx (target <= 1.05)\n", a(rps,"roost")/a(rps,"floor"), a(p50,"roost")/a(p50,"floor")
    printf "single rounds ranged: throughput %.2f-%.2fx, p50 %.2f-%.2fx (the noise of this machine)\n", lo, hi, llo, lhi
  }' "$work/results"

#!/usr/bin/env bash
# Load benchmark through the real Traefik, one run, same load generator (wrk)
# and pinning for three setups in front of the same echo workspace:
#   none  - Traefik -> workspace, no middleware;
#   floor - Traefik -> forwardAuth to a bare hyper 200 server (answering with
#           the same identity headers roost sends) -> workspace;
#   roost - Traefik -> roost's forwardAuth (cached token) -> workspace.
# The request is the workspace's /healthz (a fixed answer), so what differs
# is only the forwardAuth hop, not how much the workspace echoes back.
# Prints each one's req/s, p50 and p99, and roost's as a ratio of the
# bare-forwardAuth case (targets: p50 <= 1.05x, throughput >= 0.95x).
#
#   benches/traefik.sh            # 12 rounds x 5 s, 16 connections
# Pinning: Traefik on CPU 1 with roost / the floor and the workspace; wrk on CPU 0.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
cd "$ROOT"

DURATION=${DURATION:-5}
CONNS=${CONNS:-16}
# Many short rounds: this VM's throughput drifts by up to 2x over minutes,
# so alternating often matters more than measuring long.
ROUNDS=${ROUNDS:-12}
RUN=tbench-$$

need_apt wrk curl
need_venv
scripts/build-images --quiet
cargo build --release --quiet --bin roost --example floor --example mint_token

work=$(mktemp -d)
pids=()
trap 'bench_cleanup "$RUN"' EXIT

# The workspace: one echo container, pinned with the servers.
docker run -d --label "roost-bench.run=$RUN" --cpuset-cpus 1 -p 127.0.0.1::8080 roost-echo:nohealth >/dev/null
cid=$(docker ps -q --filter "label=roost-bench.run=$RUN")
ws="127.0.0.1:$(docker port "$cid" 8080 | head -1 | sed 's/.*://')"
wait_http "http://$ws/healthz" 30 || die "workspace did not start"

# Issuer, roost, the floor.
bench_issuer
token=$(bench_token alice)
# alice's own workspace is started on the first request; from then on every
# /auth is the hot path (cached token, ready workspace, decided from memory).
bench_roost 1 "image = \"roost-echo:nohealth\"
labels = { \"roost-bench.run\" = \"$RUN\" }"
roost=$ROOST_ADDR
# The floor answers 200 with the same three identity headers roost sends.
taskset -c 1 target/release/examples/floor --identity-headers >"$work/floor.log" 2>&1 &
pids+=($!)
floor=$(wait_for_line "$work/floor.log" 'listening on' 10 | awk '{print $3}') || die "floor"

# Traefik with a file provider: three hosts, one per setup.
cat >"$work/dynamic.yml" <<YML
http:
  middlewares:
    # The same middleware settings as roost's, pointed at a server that always says 200.
    floor-auth:
      forwardAuth:
        address: "http://$floor/auth"
        authResponseHeaders: ["X-Roost-User", "X-Roost-Workspace", "X-Roost-Email", "Authorization", "Cookie"]
        authResponseHeadersRegex: "^(?i)x[^a-z0-9]roost[^a-z0-9]"
    roost-auth:
      forwardAuth:
        address: "http://$roost/auth"
        authResponseHeaders: ["X-Roost-User", "X-Roost-Workspace", "X-Roost-Email", "Authorization", "Cookie"]
        authResponseHeadersRegex: "^(?i)x[^a-z0-9]roost[^a-z0-9]"
  routers:
    none:  { rule: "Host(\`none.ws.roost.test\`)",  service: ws, entryPoints: [web] }
    floor: { rule: "Host(\`floor.ws.roost.test\`)", service: ws, entryPoints: [web], middlewares: [floor-auth] }
    roost: { rule: "Host(\`alice.ws.roost.test\`)", service: ws, entryPoints: [web], middlewares: [roost-auth] }
  services:
    ws: { loadBalancer: { servers: [{ url: "http://$ws" }] } }
YML
web="127.0.0.1:$(free_port)"
taskset -c 1 "$VENV/bin/traefik" --entryPoints.web.address="$web" --providers.file.filename="$work/dynamic.yml" \
  --log.level=ERROR >"$work/traefik.log" 2>&1 &
pids+=($!)
for host in none floor alice; do
  deadline=$((SECONDS + 30))
  until [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $host.ws.roost.test" -H "Authorization: Bearer $token" "http://$web/")" = 200 ]; do
    [ $SECONDS -lt $deadline ] || die "traefik did not route $host"
    sleep 0.1
  done
done

run() { # run NAME HOST
  local out
  out=$(taskset -c 0 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -H "Host: $2.ws.roost.test" \
    -H "Authorization: Bearer $token" "http://$web/healthz")
  if grep -q 'Non-2xx' <<<"$out"; then die "$1: non-2xx answers: $out"; fi
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  to_us='{v=$2; if (v ~ /us$/) {sub(/us$/,"",v); print v} else if (v ~ /ms$/) {sub(/ms$/,"",v); print v*1000} else {sub(/s$/,"",v); print v*1000000}}'
  p50=$(awk '$1 == "50%"'" $to_us" <<<"$out")
  p99=$(awk '$1 == "99%"'" $to_us" <<<"$out")
  printf '%-6s round %d: %9.0f req/s  p50 %8.1f us  p99 %8.1f us\n' "$1" "$round" "$rps" "$p50" "$p99" >&2
  echo "$1 $rps $p50 $p99" >>"$work/results"
}
log "warm-up"
round=0 DURATION=2 run none none; round=0 DURATION=2 run floor floor; round=0 DURATION=2 run roost alice
: >"$work/results"
log "measuring: $ROUNDS rounds x ${DURATION}s, $CONNS connections"
for round in $(seq 1 "$ROUNDS"); do
  # Alternate the order so neither auth server always runs right after the other.
  if [ $((round % 2)) = 1 ]; then
    run none none; run floor floor; run roost alice
  else
    run roost alice; run floor floor; run none none
  fi
done
awk '
  { rps[$1] += $2; p50[$1] += $3; p99[$1] += $4; n[$1]++; r[$1, n[$1]] = $2; l[$1, n[$1]] = $3 }
  function a(x, k) { return x[k] / n[k] }
  END {
    lo = 1e9; hi = 0; llo = 1e9; lhi = 0
    for (i = 1; i <= n["roost"]; i++) {
      q = r["roost", i] / r["floor", i]; if (q < lo) lo = q; if (q > hi) hi = q
      q = l["roost", i] / l["floor", i]; if (q < llo) llo = q; if (q > lhi) lhi = q
    }
    printf "\n%-40s %10s %10s %10s\n", "", "req/s", "p50 (us)", "p99 (us)"
    printf "%-40s %10.0f %10.1f %10.1f\n", "Traefik -> workspace, no middleware", a(rps,"none"), a(p50,"none"), a(p99,"none")
    printf "%-40s %10.0f %10.1f %10.1f\n", "+ forwardAuth to a bare 200 server", a(rps,"floor"), a(p50,"floor"), a(p99,"floor")
    printf "%-40s %10.0f %10.1f %10.1f\n", "+ roost forwardAuth (cached token)", a(rps,"roost"), a(p50,"roost"), a(p99,"roost")
    printf "\nroost / bare forwardAuth: p50 %.3fx (target <= 1.05), throughput %.3fx (target >= 0.95)\n", a(p50,"roost")/a(p50,"floor"), a(rps,"roost")/a(rps,"floor")
    printf "single rounds ranged: p50 %.2f-%.2fx, throughput %.2f-%.2fx (the noise of this machine)\n", llo, lhi, lo, hi
  }' "$work/results"

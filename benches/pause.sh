#!/usr/bin/env bash
# The paused tier through the real Traefik, one run: time from request to
# first byte (curl's time_starttransfer) of the first request to
#   - a paused workspace (frozen by the cgroup freezer after
#     workspace.pause_after; its route stays in Traefik, /auth thaws it), vs
#   - a stopped one (the engine stopped it; Traefik's route is gone, roost's
#     fallback proxy starts it and answers once it is up).
# N users, each measured once per tier, one request at a time. Prints p50,
# p99 and max of each (target: paused p99 <= 50 ms) and their ratio.
#
#   benches/pause.sh            # 50 users
#   N=100 benches/pause.sh
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
cd "$ROOT"

N=${N:-50}
IMAGE=roost-echo:nohealth
RUN=pbench-$$

need_apt curl
need_venv
bench_setup "$RUN" mint_token

bench_issuer
public="127.0.0.1:$(free_port)"
BENCH_LISTEN=$public BENCH_INTERNAL="127.0.0.1:$(free_port)" BENCH_ROOST_URL="http://$public" \
  BENCH_ROUTING='entrypoints = ["web"]' bench_roost 0-1 "image = \"$IMAGE\"
pause_after = \"2s\"
idle_timeout = \"1h\"
max_paused = 1000
max_running = 1000
stop_timeout = \"1s\"
labels = { \"roost-bench.run\" = \"$RUN\" }"
roost=$ROOST_ADDR
web="127.0.0.1:$(free_port)"
api="127.0.0.1:$(free_port)"
"$VENV/bin/traefik" --entryPoints.web.address="$web" --entryPoints.traefik.address="$api" --api.insecure=true \
  --providers.http.endpoint="http://$roost/traefik" --providers.http.pollInterval=1s \
  --log.level=ERROR >"$work/traefik.log" 2>&1 &
pids+=($!)
wait_http "http://$api/api/rawdata" 30 || die "traefik did not start: $(tail -5 "$work/traefik.log")"

metric_is() { [ "$(curl -s "http://$roost/metrics" | awk -v m="$1" '$1 == m {print $2}')" = "$2" ]; }
# routers_are N: Traefik has exactly N direct workspace routes (ws-*@http).
routers_are() { [ "$(curl -s "http://$api/api/http/routers?per_page=10000" | grep -o '"name":"ws-[a-z0-9-]*@http"' | wc -l)" = "$1" ]; }
answers() { [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $1.ws.roost.test" -H "Authorization: Bearer $2" "http://$web/healthz")" = 200 ]; }
until_true() { # until_true SECONDS WHAT COMMAND...
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@"; do
    [ $SECONDS -lt $deadline ] || die "timed out waiting for $what"
    sleep 0.2
  done
}
ttfb() { # ttfb USER TOKEN: ms to first byte through Traefik; dies unless 200
  local out
  out=$(curl -s -o /dev/null -w '%{http_code} %{time_starttransfer}' -H "Host: $1.ws.roost.test" \
    -H "Authorization: Bearer $2" "http://$web/healthz")
  [ "${out%% *}" = 200 ] || die "$1: answered ${out%% *}: $(tail -5 "$work/roost.log")"
  awk '{printf "%.1f\n", $2 * 1000}' <<<"$out"
}
stats() { # stats FILE: p50 p99 max
  sort -n "$1" | awk '{a[NR]=$1} END {i=int(NR*0.99); if (i < NR*0.99) i++; printf "%.1f %.1f %.1f\n", a[int((NR+1)/2)], a[i], a[NR]}'
}

log "$N users: first request each (creates the workspace)"
for i in $(seq 1 "$N"); do
  user="p$i"
  bench_token "$user" >"$work/token-$user"
  token=$(cat "$work/token-$user")
  until_true 60 "$user's first answer" answers "$user" "$token"
done
until_true 30 "Traefik to route every workspace directly" routers_are "$N"

log "waiting for all $N to be paused"
until_true 60 "every workspace paused" metric_is roost_workspaces_paused "$N"
log "paused: $N first requests"
for i in $(seq 1 "$N"); do
  ttfb "p$i" "$(cat "$work/token-p$i")" >>"$work/paused"
done

log "stopping all $N (the engine, as a crash or an operator would)"
docker ps -q --filter "label=roost-bench.run=$RUN" | xargs -r docker stop -t 1 >/dev/null
until_true 60 "roost to see every workspace stopped" metric_is roost_workspaces_running 0
until_true 30 "Traefik to drop the direct routes" routers_are 0
log "stopped: $N first requests"
for i in $(seq 1 "$N"); do
  ttfb "p$i" "$(cat "$work/token-p$i")" >>"$work/stopped"
done

read -r pp50 pp99 pmax < <(stats "$work/paused")
read -r sp50 sp99 smax < <(stats "$work/stopped")
printf '\n%-46s %8s %8s %8s\n' "first request through Traefik, $N users" "p50 ms" "p99 ms" "max ms"
printf '%-46s %8s %8s %8s\n' "to a paused workspace (thawed by /auth)" "$pp50" "$pp99" "$pmax"
printf '%-46s %8s %8s %8s\n' "to a stopped workspace (started by roost)" "$sp50" "$sp99" "$smax"
awk -v a="$pp50" -v b="$sp50" -v c="$pp99" -v d="$sp99" \
  'BEGIN {printf "\npaused / stopped: p50 %.2fx, p99 %.2fx; paused p99 %s ms (target <= 50 ms)\n", a/b, c/d, c}'

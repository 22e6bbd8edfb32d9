#!/usr/bin/env bash
# Spawn and wake benchmark, one run, same test image for both sides:
#   - raw engine: volume + create + start + first HTTP 200, straight through
#     the Docker API (examples/raw_engine.rs: bollard, polling the port tightly),
#     vs roost: the first authorized /auth 2xx for a new user;
#   - raw: docker start + first HTTP 200 of a stopped container, vs roost's
#     wake (/auth for a user whose workspace roost has seen stop).
# Prints medians and roost's as a ratio of the raw engine's (target <= 1.15),
# and roost's resident memory at the end.
#
#   benches/spawn.sh            # 10 users
#   N=20 benches/spawn.sh
# The image is roost-echo:nohealth, so both sides wait for the same thing (an
# HTTP answer); with a HEALTHCHECK, roost waits for the engine's "healthy".
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
cd "$ROOT"

N=${N:-10}
IMAGE=roost-echo:nohealth
RUN=bench-$$

need_apt curl
bench_setup "$RUN" mint_token raw_engine

ms() { echo $(( $(date +%s%N) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

# --- raw engine (examples/raw_engine.rs: bollard, no roost) ------------------
log "raw engine: $N x (volume + create + start + first 200, then stop + start + first 200)"
target/release/examples/raw_engine "$IMAGE" "$N" "$RUN" >"$work/raw"
awk '{print $1}' "$work/raw" >"$work/raw-spawn"
awk '{print $2}' "$work/raw" >"$work/raw-wake"

# --- roost ------------------------------------------------------------------
bench_issuer
bench_roost 0-1 "image = \"$IMAGE\"
idle_timeout = \"1h\"
stop_timeout = \"1s\"
labels = { \"roost-bench.run\" = \"$RUN\" }"
addr=$ROOST_ADDR

running() { curl -s "http://$addr/metrics" | awk '/^roost_workspaces_running / {print $2}'; }
auth() { curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $1" -H "X-Forwarded-Host: $2.ws.roost.test" "http://$addr/auth"; }

log "roost: $N x first /auth for a new user, then $N x wake"
for i in $(seq 1 "$N"); do
  user="bench-$RUN-$i"
  token=$(bench_token "$user")
  auth "$token" "nobody" >/dev/null # warms the token cache: measure the spawn, not RSA
  before=$(running)
  t0=$(ms)
  code=$(auth "$token" "$user")
  echo $(( $(ms) - t0 )) >>"$work/roost-spawn"
  [ "$code" = 200 ] || die "roost answered $code: $(tail -5 "$work/roost.log")"
  docker stop -t 1 "roost-$user" >/dev/null
  until [ "$(running)" = "$before" ]; do :; done # roost has seen the stop
  t0=$(ms)
  code=$(auth "$token" "$user")
  echo $(( $(ms) - t0 )) >>"$work/roost-wake"
  [ "$code" = 200 ] || die "roost answered $code on wake"
done

rs=$(median <"$work/raw-spawn"); rw=$(median <"$work/raw-wake")
ss=$(median <"$work/roost-spawn"); sw=$(median <"$work/roost-wake")
printf '\n%-44s %10s\n' "" "median ms"
printf '%-44s %10s\n' "raw: volume + create + start + first 200" "$rs" "roost: first /auth 2xx for a new user" "$ss" \
  "raw: start + first 200" "$rw" "roost: wake (/auth 2xx)" "$sw"
awk -v rs="$rs" -v ss="$ss" -v rw="$rw" -v sw="$sw" 'BEGIN {
  printf "\nroost / raw: spawn %.2fx, wake %.2fx (target <= 1.15)\n", ss / rs, sw / rw }'
# roost's resident memory after all that (it knows N workspaces).
pid=$(pgrep -f "roost serve --config $work/roost.toml" | head -1)
echo "roost's RSS after $N spawns and wakes: $(awk '/^VmRSS/ {printf "%.1f MiB", $2 / 1024}' "/proc/$pid/status")"

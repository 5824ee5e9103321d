# Sourced by the scripts that start servers: wait_ready PORT waits (up to 2 minutes) until
# http://127.0.0.1:PORT/health answers, else stops the script.
wait_ready() {
  for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$1/health" >/dev/null && return 0
    sleep 0.2
  done
  echo "server on port $1 did not start" >&2
  exit 1
}

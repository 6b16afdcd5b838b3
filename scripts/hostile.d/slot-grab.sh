# shellcheck shell=bash
# scripts/hostile.d/slot-grab.sh — issue #12 item 6: can one client take every session slot?
# Sourced by scripts/hostile, which sets BIN and WORK and provides lib.sh.
#
# For each setup below, client A (alice) creates sessions as fast as it can over one
# keep-alive connection until it is refused (or has tried CAP times); then client B (bob)
# asks for one session. Prints, per setup, how many sessions A got, how long that took, what
# refused it (status, Retry-After), and what B got (status, Retry-After).
#
#   --auth-tokens --max-sessions 100     the issue's setup
#   --auth-tokens (default 10,000)       one socket against the default cap
#   --auth-tokens --stdio-mode per-session (16 children by default)

# One client's session grab, then another client's single try (Python: one keep-alive
# socket, far faster than a curl per request). Prints one line.
_slot_grab_run() {
  local label="$1" cap="$2"
  python3 - "$PROXY_ADDR" "$cap" "$label" <<'PY'
import http.client, sys, time
addr, cap, label = sys.argv[1], int(sys.argv[2]), sys.argv[3]
host, port = addr.rsplit(":", 1)
INIT = (b'{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":'
        b'"2025-11-25","capabilities":{},"clientInfo":{"name":"slot-grab","version":"1"}}}')
def headers(token):
    return {"Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            "Authorization": "Bearer " + token}
def init(conn, token):
    conn.request("POST", "/mcp", body=INIT, headers=headers(token))
    r = conn.getresponse()
    r.read()
    return r.status, r.getheader("Retry-After", "-")
alice = http.client.HTTPConnection(host, int(port), timeout=30)
got, refused = 0, None
start = time.monotonic()
while got < cap:
    status, retry = init(alice, "alice-0123456789abcdef")
    if status != 200:
        refused = (status, retry)
        break
    got += 1
took = time.monotonic() - start
bob = http.client.HTTPConnection(host, int(port), timeout=30)
b_status, b_retry = init(bob, "bob-0123456789abcdef")
stop = "never refused (tried %d)" % cap if refused is None else \
    "then %d Retry-After %s" % refused
print("%-44s alice: %5d sessions in %6.3f s, %s; bob: %d Retry-After %s"
      % (label, got, took, stop, b_status, b_retry))
PY
}

attack_slot_grab() {
  local tokens="$WORK/slot-grab-tokens"
  printf 'alice-0123456789abcdef alice\nbob-0123456789abcdef bob\n' >"$tokens"
  local setups=(
    "--max-sessions 100|110"
    "|10050"
    "--stdio-mode per-session|20"
  )
  local s args cap
  for s in "${setups[@]}"; do
    args="${s%%|*}"
    cap="${s##*|}"
    # shellcheck disable=SC2086 # the setup's flags are words
    start_proxy "$WORK/slot-grab.log" --auth-tokens "$tokens" $args || return 1
    _slot_grab_run "--auth-tokens ${args:-(defaults)}" "$cap" || true
    stop_pids "$PROXY_PID"
  done
}

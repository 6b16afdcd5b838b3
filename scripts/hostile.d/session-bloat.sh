# shellcheck shell=bash
# scripts/hostile.d/session-bloat.sh — issue #12 item 5: per-session memory without a byte bound.
#
# Three attacks, each on a fresh proxy with default flags, each printing RSS before and after:
#
#   versions        BLOAT_SESSIONS (50) initialize requests whose params.protocolVersion is a
#                   string of 4 MiB less 1 KiB (the body just under --max-body)
#   subscriptions   one session subscribes to BLOAT_SUBS (100) resource URIs of 1,000,000 bytes
#                   each (proxy and child RSS; answers that were JSON-RPC errors are counted),
#                   then another session to as many URIs of 8,000 bytes (errors counted)
#   replay          BLOAT_REPLAY_SESSIONS (8) sessions × 16 calls of the demo's huge_line tool
#                   (one 4,000,000-byte log message, then the answer) from clients that read the
#                   status line and leave, so each stream ends undelivered and is kept for
#                   resumption (proxy RSS and shadowcat_replay_buffer_bytes)
#
# Sourced by scripts/hostile (BIN, WORK, rss_kib, start_proxy); needs curl.

# One MCP POST with curl, the body read from FILE; prints the answer.
_bloat_post_file() {
  local sid="$1" file="$2"
  shift 2
  curl -s --max-time 30 -H 'Content-Type: application/json' \
    -H 'Accept: application/json, text/event-stream' \
    ${sid:+-H "Mcp-Session-Id: $sid"} ${sid:+-H 'MCP-Protocol-Version: 2025-11-25'} \
    --data-binary "@$file" "$@" "$PROXY_URL"
}

# A new session; prints its id.
_bloat_session() {
  local f="$WORK/bloat.init" sid
  printf '%s' '{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"hostile","version":"1"}}}' >"$f"
  sid="$(_bloat_post_file "" "$f" -D - -o /dev/null | tr -d '\r' |
    awk -F': ' 'tolower($1) == "mcp-session-id" { print $2 }')"
  [[ -n "$sid" ]] || return 1
  printf '%s' '{"jsonrpc":"2.0","method":"notifications/initialized"}' >"$f"
  _bloat_post_file "$sid" "$f" -o /dev/null
  printf '%s\n' "$sid"
}

# RSS in KiB of the proxy's children (the stdio servers) together.
_bloat_children_kib() {
  local total=0 c
  for c in $(pgrep -P "$PROXY_PID" 2>/dev/null); do
    total=$((total + $(rss_kib "$c")))
  done
  echo "$total"
}

_bloat_mib() { echo "$(($1 / 1024))"; }

_bloat_versions() {
  local n="${BLOAT_SESSIONS:-50}" f="$WORK/bloat.version" before after i ok=0 code
  start_proxy "$WORK/bloat-versions.log" || return 1
  {
    printf '{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"'
    head -c $((4 * 1024 * 1024 - 1024)) /dev/zero | tr '\0' '9'
    printf '","capabilities":{},"clientInfo":{"name":"hostile","version":"1"}}}'
  } >"$f"
  before="$(rss_kib "$PROXY_PID")"
  for ((i = 0; i < n; i++)); do
    code="$(_bloat_post_file "" "$f" -o /dev/null -w '%{http_code}')" || code=000
    [[ "$code" == 200 ]] && ok=$((ok + 1))
  done
  sleep 1
  after="$(rss_kib "$PROXY_PID")"
  printf 'session-bloat versions: %d initialize with a 4 MiB protocolVersion (%d answered 200): proxy RSS %d -> %d MiB\n' \
    "$n" "$ok" "$(_bloat_mib "$before")" "$(_bloat_mib "$after")"
  stop_pids "$PROXY_PID"
}

_bloat_subscriptions() {
  local n="${BLOAT_SUBS:-100}" f="$WORK/bloat.sub" uri="$WORK/bloat.uri" sid
  local before after cbefore cafter i errors=0
  start_proxy "$WORK/bloat-subs.log" || return 1
  sid="$(_bloat_session)" || { echo "session-bloat: initialize failed"; return 1; }
  head -c 999990 /dev/zero | tr '\0' 'u' >"$uri"
  before="$(rss_kib "$PROXY_PID")"
  cbefore="$(_bloat_children_kib)"
  for ((i = 0; i < n; i++)); do
    {
      printf '{"jsonrpc":"2.0","id":%d,"method":"resources/subscribe","params":{"uri":"test://%04d/' "$i" "$i"
      cat "$uri"
      printf '"}}'
    } >"$f"
    _bloat_post_file "$sid" "$f" | grep -q '"error"' && errors=$((errors + 1))
  done
  sleep 1
  after="$(rss_kib "$PROXY_PID")"
  cafter="$(_bloat_children_kib)"
  printf 'session-bloat subscriptions: %d x 1 MB URIs in one session (%d refused): proxy RSS %d -> %d MiB, children %d -> %d MiB\n' \
    "$n" "$errors" "$(_bloat_mib "$before")" "$(_bloat_mib "$after")" \
    "$(_bloat_mib "$cbefore")" "$(_bloat_mib "$cafter")"
  sid="$(_bloat_session)" || { echo "session-bloat: initialize failed"; return 1; }
  head -c 7990 /dev/zero | tr '\0' 'u' >"$uri"
  errors=0
  for ((i = 0; i < n; i++)); do
    {
      printf '{"jsonrpc":"2.0","id":%d,"method":"resources/subscribe","params":{"uri":"test://%04d/' "$i" "$i"
      cat "$uri"
      printf '"}}'
    } >"$f"
    _bloat_post_file "$sid" "$f" | grep -q '"error"' && errors=$((errors + 1))
  done
  printf 'session-bloat subscriptions: %d x 8 KB URIs in another session: %d refused\n' "$n" "$errors"
  stop_pids "$PROXY_PID"
}

_bloat_replay() {
  local sessions="${BLOAT_REPLAY_SESSIONS:-8}" before after s i sid body line replay
  start_proxy "$WORK/bloat-replay.log" || return 1
  before="$(rss_kib "$PROXY_PID")"
  body='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"huge_line","arguments":{"bytes":4000000}}}'
  for ((s = 0; s < sessions; s++)); do
    sid="$(_bloat_session)" || { echo "session-bloat: initialize failed"; return 1; }
    for ((i = 0; i < 16; i++)); do
      # One call at a time (a log line goes to a call only while one session has calls in
      # flight); the client reads the status line, then leaves mid-stream.
      exec 3<>"/dev/tcp/${PROXY_ADDR%:*}/${PROXY_PORT}"
      printf 'POST /mcp HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nMcp-Session-Id: %s\r\nMCP-Protocol-Version: 2025-11-25\r\nContent-Length: %d\r\n\r\n%s' \
        "$PROXY_ADDR" "$sid" "${#body}" "$body" >&3
      IFS= read -r -t 10 line <&3 || true
      exec 3<&-
      sleep 0.1
    done
  done
  sleep 1
  after="$(rss_kib "$PROXY_PID")"
  replay="$(curl -s --max-time 5 "http://$PROXY_ADDR/metrics" |
    awk '/^shadowcat_replay_buffer_bytes / { printf "%d", $2 / 1048576 }')"
  printf 'session-bloat replay: %d sessions x 16 undelivered streams of a 4 MB event: proxy RSS %d -> %d MiB, replay buffers %s MiB\n' \
    "$sessions" "$(_bloat_mib "$before")" "$(_bloat_mib "$after")" "${replay:-?}"
  stop_pids "$PROXY_PID"
}

attack_session_bloat() {
  _bloat_versions
  _bloat_subscriptions
  _bloat_replay
}

# shellcheck shell=bash
# scripts/hostile.d/flood.sh — issue #12 item 2: one request makes the proxy's memory grow.
#
# A session calls the demo server's `stream_events` with a huge count and `intervalMs: 0` (a
# progress notification and a log message per event, as fast as the child can print them) from
# a socket that sends the request and then never reads. Meanwhile a second session calls `echo`
# in a loop on the same child (--stdio-children 1). Prints the proxy's RSS at the start, its
# maximum and at the end of FLOOD_SECONDS (20), the other session's call count and median and
# maximum latency, and the messages the proxy counted as dropped for the slow client.
#
# Sourced by scripts/hostile (BIN, WORK, rss_kib, start_proxy); needs curl.

# One MCP POST with curl; prints the body. Extra curl arguments after the body.
_flood_post() {
  local sid="$1" body="$2"
  shift 2
  curl -s --max-time 10 -H 'Content-Type: application/json' \
    -H 'Accept: application/json, text/event-stream' \
    ${sid:+-H "Mcp-Session-Id: $sid"} ${sid:+-H 'MCP-Protocol-Version: 2025-11-25'} \
    --data-binary "$body" "$@" "$PROXY_URL"
}

# initialize + notifications/initialized; prints the session id.
_flood_session() {
  local init='{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"hostile","version":"1"}}}'
  local sid
  sid="$(_flood_post "" "$init" -D - -o /dev/null | tr -d '\r' |
    awk -F': ' 'tolower($1) == "mcp-session-id" { print $2 }')"
  [[ -n "$sid" ]] || return 1
  _flood_post "$sid" '{"jsonrpc":"2.0","method":"notifications/initialized"}' -o /dev/null
  printf '%s\n' "$sid"
}

attack_flood() {
  local secs="${FLOOD_SECONDS:-20}"
  start_proxy "$WORK/flood.log" --stdio-children 1 || return 1
  local other flooder
  other="$(_flood_session)" || { echo "flood: initialize failed"; return 1; }
  flooder="$(_flood_session)" || { echo "flood: initialize failed"; return 1; }
  local start max end rss
  start="$(rss_kib "$PROXY_PID")"
  max="$start"
  # The flood: the request is written, the answer never read (the subshell keeps the socket).
  local body='{"jsonrpc":"2.0","id":"flood","method":"tools/call","params":{"name":"stream_events","arguments":{"count":1000000000,"intervalMs":0},"_meta":{"progressToken":"flood"}}}'
  (
    exec 3<>"/dev/tcp/${PROXY_ADDR%:*}/${PROXY_PORT}"
    printf 'POST /mcp HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nMcp-Session-Id: %s\r\nMCP-Protocol-Version: 2025-11-25\r\nContent-Length: %d\r\n\r\n%s' \
      "$PROXY_ADDR" "$flooder" "${#body}" "$body" >&3
    exec sleep "$((secs + 5))"
  ) &
  local client=$!
  cleanup_pid "$client"
  # The other session, and the proxy's RSS between its calls.
  local times="$WORK/flood.times" until=$((SECONDS + secs)) i=0 t
  : >"$times"
  while ((SECONDS < until)); do
    i=$((i + 1))
    t="$(_flood_post "$other" "{\"jsonrpc\":\"2.0\",\"id\":$i,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"message\":\"m$i\"}}}" \
      -o "$WORK/flood.answer" -w '%{time_total}')" || t=10
    grep -q "Echo: m$i" "$WORK/flood.answer" 2>/dev/null || t="failed"
    printf '%s\n' "$t" >>"$times"
    rss="$(rss_kib "$PROXY_PID")"
    ((rss > max)) && max="$rss"
    sleep 0.1
  done
  end="$(rss_kib "$PROXY_PID")"
  ((end > max)) && max="$end"
  stop_pids "$client"
  local calls failed median slowest
  calls="$(wc -l <"$times")"
  failed="$(grep -c failed "$times" || true)"
  median="$(grep -v failed "$times" | sort -g | awk '{ v[NR] = $1 } END { if (NR) printf "%.1f", v[int((NR + 1) / 2)] * 1000; else print "-" }')"
  slowest="$(grep -v failed "$times" | sort -g | tail -n 1 | awk '{ printf "%.1f", $1 * 1000 }')"
  sleep 1 # the flood's stream thread notices the client left and counts its drops
  local dropped
  dropped="$(curl -s --max-time 5 "http://$PROXY_ADDR/metrics" |
    awk '/^shadowcat_dropped_messages_total\{reason="slow_client"\}/ { print $2 }')"
  printf 'flood: %ss of stream_events (intervalMs 0) to a client that never reads\n' "$secs"
  printf 'flood: proxy RSS start %d MiB, max %d MiB, end %d MiB\n' \
    "$((start / 1024))" "$((max / 1024))" "$((end / 1024))"
  printf 'flood: other session: %d echo calls, %d failed, median %s ms, max %s ms\n' \
    "$calls" "$failed" "$median" "${slowest:--}"
  printf 'flood: dropped_messages_total{reason="slow_client"}: %s\n' "${dropped:-absent (no such metric)}"
  stop_pids "$PROXY_PID"
}

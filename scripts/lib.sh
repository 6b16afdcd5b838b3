# shellcheck shell=bash
# scripts/lib.sh — what the scripts in scripts/ share. Sourced, not run:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Sourcing it installs traps: EXIT runs the cleanup registry below, INT and TERM exit with
# status 130 (so EXIT's cleanup still runs). A script must not set its own EXIT/INT/TERM traps;
# it registers what it wants undone instead.
#
#   die MSG...              "scripts/NAME: error: MSG" on stderr, exit 1
#   step MSG...             "\n==> MSG" (on stdout, or on the fd in STEP_FD, e.g. STEP_FD=2)
#
# Cleanup registry, undone on exit however the script ends:
#   cleanup_pid PID...      stop these processes (see stop_pids)
#   cleanup_path PATH...    rm -rf these (temporary directories and files)
#   cleanup_forget PID...   drop these pids (the script stopped and reaped them itself; a reaped
#                           pid may be reused by an unrelated process, so it must not stay listed)
#   stop_pids [-t SECONDS] PID...
#                           SIGTERM to each, wait up to SECONDS (15) for all of them, then
#                           SIGKILL what is left, reap them, and SIGKILL whatever of their process
#                           trees (taken before the SIGTERM) outlived them; forgets the pids
#
# Servers:
#   start_proxy LOGFILE ARGS...
#                           starts `$BIN reverse --bind 127.0.0.1:0 ARGS...` (in its own session,
#                           via setsid; stdout and stderr to LOGFILE; registered for cleanup) and
#                           waits up to PROXY_START_TIMEOUT seconds (10) for the address the kernel
#                           gave it, from its log line "shadowcat listening on http://ADDR/PATH
#                           (upstream …)" (https:// with --tls-cert; src/app.rs). Sets PROXY_PID,
#                           PROXY_URL (http(s)://127.0.0.1:PORT/mcp), PROXY_ADDR (127.0.0.1:PORT) and
#                           PROXY_PORT. RUST_LOG is PROXY_RUST_LOG (warn) plus
#                           shadowcat::app=info, the module that logs that line (the access log,
#                           shadowcat::access, stays at PROXY_RUST_LOG). On failure prints the
#                           log's tail and why on stderr and returns 1 (the process is stopped).
#   free_port               a free loopback port, bound then released: racy, so only for servers
#                           that cannot bind port 0 and report it (the bench peers)
#   wait_http URL [SECONDS [PID]]
#                           waits up to SECONDS (10) until URL answers HTTP (any status; with
#                           curl, else until its port accepts a TCP connection); returns 0 when it
#                           does, 1 on timeout, 2 as soon as PID (if given) is gone
#
# Browsers:
#   ensure_chromium         makes sure Debian's `chromium` is installed (the browser tests,
#                           tests/it/browser.rs, run it headless): nothing when `chromium` is on
#                           PATH; else, as root, `apt-get install -y chromium`, with `apt-get
#                           update` first when that fails (an old or empty package list). Only
#                           Debian's package, nothing that downloads a browser build of its own.
#                           Not root and no chromium: dies with the command to run.
#   ensure_haproxy          the same for Debian's `haproxy` (bookworm: 2.6), which the
#   ensure_redis            scale-out tests (tests/it/r17_scale) start on free loopback ports,
#                           and `redis-server` (bookworm: 7.0). A service the package starts is
#                           stopped and disabled at once: the tests run their own.

# --- messages ---------------------------------------------------------------------------------
SCRIPT_NAME="scripts/$(basename "$0")"

die() {
  printf '%s: error: %s\n' "$SCRIPT_NAME" "$*" >&2
  exit 1
}

step() { printf '\n==> %s\n' "$*" >&"${STEP_FD:-1}"; }

# --- cleanup registry -------------------------------------------------------------------------
CLEANUP_PIDS=()
CLEANUP_PATHS=()

cleanup_pid() { CLEANUP_PIDS+=("$@"); }
cleanup_path() { CLEANUP_PATHS+=("$@"); }

cleanup_forget() {
  local keep=() p f drop
  for p in "${CLEANUP_PIDS[@]}"; do
    drop=0
    for f in "$@"; do [[ "$p" == "$f" ]] && drop=1; done
    ((drop)) || keep+=("$p")
  done
  CLEANUP_PIDS=("${keep[@]}")
}

# The pids of PID's whole process tree below it.
descendants() {
  local c
  for c in $(pgrep -P "$1" 2>/dev/null); do
    echo "$c"
    descendants "$c"
  done
  return 0
}

stop_pids() {
  local timeout=15
  if [[ "${1:-}" == -t ]]; then
    timeout="$2"
    shift 2
  fi
  local live=() tree=() p i
  for p in "$@"; do
    kill -0 "$p" 2>/dev/null || { wait "$p" 2>/dev/null || true; continue; }
    live+=("$p")
    # shellcheck disable=SC2207
    tree+=($(descendants "$p"))
  done
  for p in "${live[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for ((i = 0; i < timeout * 10; i++)); do
    local any=0
    for p in "${live[@]}"; do
      if kill -0 "$p" 2>/dev/null; then any=1; break; fi
    done
    ((any)) || break
    sleep 0.1
  done
  for p in "${live[@]}"; do
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  # Children that outlived their parent's SIGTERM (their pids were taken while it was alive).
  for p in "${tree[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  cleanup_forget "$@"
  return 0
}

_lib_cleanup() {
  local rc=$?
  # Only in the script's own shell: a child forked for `cmd &` that is signalled before it has
  # exec'd cmd still has these traps and runs them; it must not stop its siblings.
  if [[ "$BASHPID" == "$$" ]]; then
    set +e
    ((${#CLEANUP_PIDS[@]} == 0)) || stop_pids "${CLEANUP_PIDS[@]}"
    ((${#CLEANUP_PATHS[@]} == 0)) || rm -rf -- "${CLEANUP_PATHS[@]}"
  fi
  exit "$rc"
}
trap _lib_cleanup EXIT
trap 'exit 130' INT TERM

# --- servers ----------------------------------------------------------------------------------
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# True when URL answers HTTP (any status, even if the body never ends).
_answers() {
  local url="$1" hostport code
  if command -v curl >/dev/null; then
    code="$(curl -s -o /dev/null --max-time 2 -w '%{http_code}' "$url" 2>/dev/null)" || true
    [[ -n "$code" && "$code" != 000 ]]
  else
    hostport="${url#*://}"
    hostport="${hostport%%/*}"
    (exec 3<>"/dev/tcp/${hostport%:*}/${hostport##*:}") 2>/dev/null
  fi
}

wait_http() {
  local url="$1" timeout="${2:-10}" pid="${3:-}" i
  for ((i = 0; i < timeout * 10; i++)); do
    _answers "$url" && return 0
    if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then return 2; fi
    sleep 0.1
  done
  _answers "$url"
}

start_proxy() {
  local logf="$1" timeout="${PROXY_START_TIMEOUT:-10}" i url=""
  shift
  [[ -n "${BIN:-}" ]] || die "start_proxy: BIN (the shadowcat binary) is not set"
  local launch=()
  command -v setsid >/dev/null && launch=(setsid)
  RUST_LOG="${PROXY_RUST_LOG:-warn},shadowcat::app=info" \
    "${launch[@]}" "$BIN" reverse --bind 127.0.0.1:0 "$@" >"$logf" 2>&1 </dev/null &
  PROXY_PID=$!
  cleanup_pid "$PROXY_PID"
  for ((i = 0; i <= timeout * 10; i++)); do
    url="$(sed -n 's|.*shadowcat listening on \(https\{0,1\}://[^ ]*\) (upstream .*|\1|p' "$logf" 2>/dev/null)" || true
    url="${url%%$'\n'*}"
    [[ -n "$url" ]] && break
    if ! kill -0 "$PROXY_PID" 2>/dev/null; then
      tail -n 20 "$logf" >&2
      printf '%s: the proxy exited at start (log: %s)\n' "$SCRIPT_NAME" "$logf" >&2
      stop_pids "$PROXY_PID"
      return 1
    fi
    sleep 0.1
  done
  if [[ -z "$url" ]]; then
    tail -n 20 "$logf" >&2
    printf '%s: the proxy logged no "shadowcat listening on" line within %s s\n' \
      "$SCRIPT_NAME" "$timeout" >&2
    stop_pids "$PROXY_PID"
    return 1
  fi
  # shellcheck disable=SC2034 # outputs, read by the sourcing script
  PROXY_URL="$url"
  PROXY_ADDR="${url#*://}"
  PROXY_ADDR="${PROXY_ADDR%%/*}"
  # shellcheck disable=SC2034
  PROXY_PORT="${PROXY_ADDR##*:}"
}

# --- browsers ---------------------------------------------------------------------------------
ensure_chromium() {
  if command -v chromium >/dev/null; then
    echo "chromium: $(chromium --version 2>/dev/null || echo 'installed')"
    return 0
  fi
  if [[ "$(id -u)" != 0 ]]; then
    die "chromium is missing: run 'sudo apt-get install -y chromium' (the browser tests need it)"
  fi
  command -v apt-get >/dev/null || die "chromium is missing and there is no apt-get to install it"
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium)
  if ! "${apt[@]}"; then
    apt-get update -q || die "apt-get update failed"
    "${apt[@]}" || die "apt-get install chromium failed"
  fi
  command -v chromium >/dev/null || die "chromium installed but not on PATH"
  echo "chromium: $(chromium --version 2>/dev/null || echo 'installed')"
}

# apt-get installs Debian package $1 when command $2 is missing (see ensure_chromium), then
# stops and disables the system service the package may have started: tests run their own.
ensure_apt_tool() {
  local pkg="$1" cmd="$2" service="$3"
  if command -v "$cmd" >/dev/null || [[ -x "/usr/sbin/$cmd" ]]; then
    echo "$pkg: installed"
    return 0
  fi
  if [[ "$(id -u)" != 0 ]]; then
    die "$pkg is missing: run 'sudo apt-get install -y $pkg' (tests/it/r17_scale needs it)"
  fi
  command -v apt-get >/dev/null || die "$pkg is missing and there is no apt-get to install it"
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$pkg")
  if ! "${apt[@]}"; then
    apt-get update -q || die "apt-get update failed"
    "${apt[@]}" || die "apt-get install $pkg failed"
  fi
  if command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; then
    systemctl disable --now "$service" >/dev/null 2>&1 || true
  elif command -v service >/dev/null; then
    service "$service" stop >/dev/null 2>&1 || true
  fi
  command -v "$cmd" >/dev/null || [[ -x "/usr/sbin/$cmd" ]] || die "$pkg installed but $cmd not found"
  echo "$pkg: installed now"
}

ensure_haproxy() { ensure_apt_tool haproxy haproxy haproxy; }
ensure_redis() { ensure_apt_tool redis-server redis-server redis-server; }

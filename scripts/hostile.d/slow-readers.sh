# shellcheck shell=bash
# scripts/hostile.d/slow-readers.sh — issue #12 item 1: clients that send requests and never
# read the answers. Sourced by scripts/hostile, which sets BIN and WORK and sources lib.sh.
#
# SLOW_READERS connections (default 64, the default --workers) each set a 4 KiB receive
# buffer, pipeline 1,000 `GET /metrics` and never read; every second each sends one more
# request, and reconnects when the proxy has closed it (as an attacker would). After
# SLOW_WARMUP seconds (default 3) a normal client, on fresh connections, asks for `/healthz`
# and POSTs an `initialize`, SLOW_TRIES times (default 5), SLOW_SPACING seconds apart
# (default 3, so that the tries span the proxy's 10 s write timeout and the attackers'
# reconnections), with a SLOW_TIMEOUT-second bound on each (default 10); the two requests of
# a try run at the same time. Printed: the median time to the whole answer, each try, how
# much the proxy had written that the attackers had not read (its Send-Q, from
# /proc/net/tcp), and the same without the attack for comparison. A try that gets no answer
# within the bound counts as the bound and is marked "timeout".
#
#   scripts/hostile slow-readers
#   SHADOWCAT_BIN=/tmp/old/shadowcat scripts/hostile slow-readers

attack_slow_readers() {
  local log="$WORK/slow-readers.log"
  start_proxy "$log" || die "slow-readers: the proxy did not start (log: $log)"
  local rc=0
  python3 - "$PROXY_ADDR" <<'PY' || rc=$?
import os
import socket
import statistics
import sys
import threading
import time

host, port = sys.argv[1].rsplit(":", 1)
addr = (host, int(port))
readers = int(os.environ.get("SLOW_READERS", "64"))
tries = int(os.environ.get("SLOW_TRIES", "5"))
bound = float(os.environ.get("SLOW_TIMEOUT", "10"))
warmup = float(os.environ.get("SLOW_WARMUP", "3"))
spacing = float(os.environ.get("SLOW_SPACING", "3"))

ONE = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
PIPELINE = ONE * 1000
INIT = (
    b'{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25",'
    b'"capabilities":{},"clientInfo":{"name":"slow-readers","version":"1"}}}'
)
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
INITIALIZE = (
    b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Accept: application/json, text/event-stream\r\nConnection: close\r\n"
    b"Content-Length: " + str(len(INIT)).encode() + b"\r\n\r\n" + INIT
)

stop = threading.Event()
lock = threading.Lock()
stats = {"connects": 0, "closed_by_proxy": 0, "sent": 0}


def attacker():
    while not stop.is_set():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            s.connect(addr)
        except OSError:
            s.close()
            time.sleep(0.1)
            continue
        with lock:
            stats["connects"] += 1
        s.settimeout(1.0)
        todo = memoryview(PIPELINE)
        try:
            while not stop.is_set():
                if not todo:
                    time.sleep(1.0)
                    todo = memoryview(ONE)
                try:
                    n = s.send(todo)
                except socket.timeout:
                    continue  # the proxy is not reading: it is stuck writing to us
                todo = todo[n:]
                with lock:
                    stats["sent"] += n
        except OSError:
            with lock:
                stats["closed_by_proxy"] += 1
        finally:
            s.close()


def timed(request):
    """Seconds until the whole answer (the proxy closes: Connection: close), or None."""
    started = time.monotonic()
    deadline = started + bound
    try:
        s = socket.create_connection(addr, timeout=bound)
    except OSError:
        return None
    try:
        s.sendall(request)
        got = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            s.settimeout(left)
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        if not got.startswith(b"HTTP/1.1 200"):
            print(f"slow-readers: unexpected answer: {got[:80]!r}", file=sys.stderr)
            return None
        return time.monotonic() - started
    except OSError:
        return None
    finally:
        s.close()


def proxy_send_queue():
    """(connections, bytes) the proxy has written to its clients and they have not read:
    the Send-Q of its established sockets, from /proc/net/tcp (Linux; (0, 0) elsewhere)."""
    n = total = 0
    try:
        with open("/proc/net/tcp") as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return (0, 0)
    for line in lines:
        f = line.split()
        if len(f) > 4 and f[3] == "01" and int(f[1].rsplit(":", 1)[1], 16) == addr[1]:
            tx = int(f[4].split(":")[0], 16)
            if tx:
                n += 1
                total += tx
    return (n, total)


def measure(label, spacing):
    results = {"/healthz": [], "initialize": []}
    for i in range(tries):
        if i:
            time.sleep(spacing)
        conns, queued = proxy_send_queue()
        if queued:
            print(
                f"slow-readers:   try {i + 1}: the proxy has {queued / 2**20:.1f} MiB unread "
                f"by {conns} connections"
            )
        out = {}
        threads = [
            threading.Thread(target=lambda k=k, r=r: out.__setitem__(k, timed(r)))
            for k, r in (("/healthz", HEALTHZ), ("initialize", INITIALIZE))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for k, v in out.items():
            results[k].append(v)

    def fmt(v):
        return "timeout" if v is None else f"{v * 1000:.1f}"

    parts = []
    for k, vs in results.items():
        med = statistics.median(bound if v is None else v for v in vs)
        late = sum(v is None for v in vs)
        shown = f"{med * 1000:.1f} ms" if late * 2 < len(vs) else f">= {bound:.0f} s (no answer)"
        parts.append(f"{k} {shown}")
    print(f"slow-readers: {label}, median of {tries}: " + ", ".join(parts))
    for k, vs in results.items():
        print(f"slow-readers:   {k} tries (ms): " + " ".join(fmt(v) for v in vs))


measure("no attack", 0)
threads = [threading.Thread(target=attacker, daemon=True) for _ in range(readers)]
for t in threads:
    t.start()
time.sleep(warmup)
measure(
    f"{readers} slow readers (1,000 pipelined GET /metrics each, 4 KiB receive buffer)",
    spacing,
)
stop.set()
with lock:
    print(
        f"slow-readers: attacker connections {stats['connects']}, closed by the proxy "
        f"{stats['closed_by_proxy']}, request bytes sent {stats['sent']}"
    )
PY
  stop_pids "$PROXY_PID"
  ((rc == 0)) || die "slow-readers: the measurement failed ($rc)"
}

"""Parse a Prometheus text exposition (format 0.0.4) with the reference Python parser.

    python tests/py/promparse.py URL_OR_FILE        # http(s)://… is fetched, "-" is stdin

Fetches the text (urllib, GET, checks 200 and a text/plain Content-Type) or reads the file,
parses it with ``prometheus_client.parser.text_string_to_metric_families`` and prints ONE JSON
object on one line:

    {"shadowcat_requests": {"type": "counter", "help": "…",
                            "samples": [["shadowcat_requests_total",
                                         {"class": "tools/call", "status": "200"}, 2.0], …]},
     "shadowcat_request_duration_seconds": {"type": "histogram", …}, …}

Keys are the parser's family names: a counter's family drops the ``_total`` suffix its samples
carry (``shadowcat_requests`` / ``shadowcat_requests_total``). Values are numbers (floats).

On top of what the parser accepts, it fails when a family appears twice (HELP/TYPE repeated or
families interleaved), when a family has no TYPE ("unknown"), or when a histogram series' buckets
are not cumulative, do not end in ``le="+Inf"``, or ``+Inf`` differs from ``_count``.

Contract of tests/py drivers: exit 0 and one JSON line on stdout; on failure a one-line
"promparse: FAIL: …" on stderr and exit 1 (2 = bad usage). Fetch timeout: env
``MCP_DRIVER_TIMEOUT`` (default 15 s).
"""

from __future__ import annotations

import json
import math
import os
import sys
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

TIMEOUT = float(os.environ.get("MCP_DRIVER_TIMEOUT", "15"))


class CheckError(Exception):
    """The exposition is not what the format requires."""


def fail(message: str, code: int = 1) -> None:
    sys.stderr.write(f"promparse: FAIL: {message}\n")
    sys.stderr.flush()
    sys.exit(code)


def load(source: str) -> str:
    if source == "-":
        return sys.stdin.read()
    if source.startswith(("http://", "https://")):
        req = urllib.request.Request(source, headers={"Accept": "text/plain"})
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
                ctype = resp.headers.get("Content-Type", "")
                body = resp.read()
                status = resp.status
        except urllib.error.HTTPError as e:
            raise CheckError(f"GET {source}: HTTP {e.code}") from e
        if status != 200:
            raise CheckError(f"GET {source}: HTTP {status}")
        if not ctype.startswith("text/plain"):
            raise CheckError(f"GET {source}: Content-Type {ctype!r}, want text/plain")
        return body.decode("utf-8")
    with open(source, encoding="utf-8") as f:
        return f.read()


def check_comments(text: str) -> None:
    """Each family has exactly one HELP and one TYPE line."""
    for kind in ("HELP", "TYPE"):
        names = Counter(
            line.split(" ", 3)[2]
            for line in text.splitlines()
            if line.startswith(f"# {kind} ") and len(line.split(" ", 3)) >= 3
        )
        again = sorted(n for n, c in names.items() if c > 1)
        if again:
            raise CheckError(f"# {kind} repeated for {', '.join(again)}")


def check_histogram(name: str, samples: list[Any]) -> None:
    buckets: dict[tuple, list[tuple[float, float]]] = defaultdict(list)
    counts: dict[tuple, float] = {}
    sums: dict[tuple, float] = {}
    for s in samples:
        rest = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
        if s.name.endswith("_bucket"):
            buckets[rest].append((float(s.labels["le"]), s.value))
        elif s.name.endswith("_count"):
            counts[rest] = s.value
        elif s.name.endswith("_sum"):
            sums[rest] = s.value
    if set(buckets) != set(counts) or set(buckets) != set(sums):
        raise CheckError(f"{name}: series without all of _bucket, _sum, _count")
    for key, bs in buckets.items():
        les = [le for le, _ in bs]
        values = [v for _, v in bs]
        if les != sorted(les) or len(set(les)) != len(les):
            raise CheckError(f"{name}{dict(key)}: le not increasing")
        if values != sorted(values):
            raise CheckError(f"{name}{dict(key)}: buckets not cumulative")
        if not les or les[-1] != math.inf:
            raise CheckError(f'{name}{dict(key)}: no le="+Inf" bucket')
        if values[-1] != counts[key]:
            raise CheckError(f"{name}{dict(key)}: +Inf {values[-1]} != _count {counts[key]}")


def number(v: float) -> Any:
    return v if math.isfinite(v) else str(v)


def parse(text: str) -> dict[str, Any]:
    check_comments(text)
    out: dict[str, Any] = {}
    for fam in text_string_to_metric_families(text):
        if fam.name in out:
            raise CheckError(f"family {fam.name} appears twice (interleaved?)")
        if fam.type == "unknown":
            raise CheckError(f"family {fam.name} has no # TYPE")
        if fam.type == "histogram":
            check_histogram(fam.name, fam.samples)
        out[fam.name] = {
            "type": fam.type,
            "help": fam.documentation,
            "samples": [[s.name, dict(s.labels), number(s.value)] for s in fam.samples],
        }
    return out


def main() -> None:
    argv = sys.argv[1:]
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        sys.stderr.write("usage: promparse.py URL_OR_FILE\n")
        sys.exit(2)
    try:
        result = parse(load(argv[0]))
    except CheckError as e:
        fail(str(e))
    except Exception as e:  # noqa: BLE001 - any parser or I/O error is a failure
        fail(f"{type(e).__name__}: {e}")
    print(json.dumps(result, separators=(",", ":"), allow_nan=False))


if __name__ == "__main__":
    main()

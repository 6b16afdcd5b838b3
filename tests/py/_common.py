"""Shared plumbing for the Python MCP client drivers in tests/py/.

The Rust integration tests run each driver as

    $SHADOWCAT_PEERS/venv/bin/python tests/py/<driver>.py <url> [args]

and rely on this contract:

* exit 0 on success, printing exactly ONE JSON object (one line) on stdout;
* exit non-zero on failure, with a one-line "<driver>: FAIL: ..." message on stderr
  (exit 1 = the MCP exchange failed, 2 = bad usage, 3 = hard watchdog fired);
* finish within a bounded time: the async body runs under ``anyio.fail_after``
  (default 15 s, env ``MCP_DRIVER_TIMEOUT``), and a SIGALRM watchdog kills the
  process a few seconds later should teardown itself hang.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

DEFAULT_TIMEOUT = float(os.environ.get("MCP_DRIVER_TIMEOUT", "15"))
WATCHDOG_GRACE = 5  # extra seconds before the hard kill


class DriverError(Exception):
    """A check in the driver failed (the server answered, but not as expected)."""


def _driver_name() -> str:
    return os.path.splitext(os.path.basename(sys.argv[0]))[0] or "driver"


def describe(exc: BaseException) -> str:
    """A readable one-liner for an exception, unwrapping anyio/TaskGroup exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(describe(e) for e in exc.exceptions)
    # MCPError carries the JSON-RPC error object: show the code, it is what tests care about.
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None)
    if code is not None:
        return f"{type(exc).__name__} (JSON-RPC code {code}): {getattr(error, 'message', exc)}"
    text = str(exc) or repr(exc)
    return f"{type(exc).__name__}: {text}"


def _leaves(exc: BaseException) -> list[BaseException]:
    """The non-group exceptions inside a (possibly nested) exception group."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in _leaves(e)]
    return [exc]


def text_of(content: list[Any]) -> str:
    """Concatenate the text blocks of a tool result / message content list."""
    return "".join(getattr(block, "text", "") for block in content or [])


def fail(message: str, code: int = 1) -> None:
    sys.stderr.write(f"{_driver_name()}: FAIL: {message}\n")
    sys.stderr.flush()
    # os._exit: never hang on lingering transport tasks/threads at interpreter exit.
    os._exit(code)


def run(body: Callable[[str, list[str]], Awaitable[dict[str, Any]]], usage: str) -> None:
    """Parse ``<url> [args]``, run ``body(url, args)`` under a timeout, print its JSON result."""
    argv = sys.argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        sys.stderr.write(f"usage: {_driver_name()}.py {usage}\n")
        os._exit(2)
    url, args = argv[0], argv[1:]

    # SDK deprecation chatter (e.g. ping / logging are deprecated at 2026-07-28) is noise here.
    warnings.simplefilter("ignore")

    timeout = DEFAULT_TIMEOUT

    def _watchdog(_signum: int, _frame: Any) -> None:
        fail(f"hard watchdog: still running {timeout + WATCHDOG_GRACE:.0f}s after start (hung teardown?)", 3)

    signal.signal(signal.SIGALRM, _watchdog)
    signal.alarm(int(timeout + WATCHDOG_GRACE))

    async def _main() -> dict[str, Any]:
        with anyio.fail_after(timeout):
            return await body(url, args)

    started = time.monotonic()
    try:
        result = anyio.run(_main)
    except BaseException as exc:  # noqa: BLE001 - report anything, including exception groups
        leaves = _leaves(exc)
        if all(isinstance(e, TimeoutError) for e in leaves):
            fail(f"timed out after {timeout:.0f}s talking to {url}")
        if len(leaves) == 1 and isinstance(leaves[0], DriverError):
            fail(str(leaves[0]))
        fail(f"{describe(exc)} (url {url})")
    signal.alarm(0)

    result.setdefault("elapsedMs", round((time.monotonic() - started) * 1000))
    sys.stdout.write(json.dumps(result, sort_keys=False) + "\n")
    sys.stdout.flush()
    os._exit(0)

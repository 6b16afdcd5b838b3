"""Session clients of the official SDK (mcp 2.3.0) through a load balancer, for a while.

    python tests/py/scale.py URL CLIENTS SECONDS

Runs CLIENTS session-era clients at once (``ClientSession.initialize``: one ``Mcp-Session-Id``
each) for SECONDS. Each calls ``echo`` in a loop; when a call fails (404 after its instance
went away, a connection error), it records the error and re-initializes (a new session,
usually on another instance) and goes on. The instance of each session is the part of its
``Mcp-Session-Id`` before the first dot (shadowcat's ``--instance-id``).

Prints e.g.
    {"clients": [{"instances": ["web1"], "ok": 120, "errors": []}, ...]}
where ``instances`` lists the instance of every session the client had, in order (one entry:
it never moved), ``errors`` the failures, each followed by a re-initialization.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

os.environ.setdefault("MCP_DRIVER_TIMEOUT", "90")

import anyio  # noqa: E402
import httpx2  # noqa: E402
from _common import describe, run, text_of  # noqa: E402
from mcp import ClientSession  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402
from mcp.shared._httpx_utils import create_mcp_http_client  # noqa: E402


async def one_session(url: str, tag: str, until: float, rec: dict[str, Any]) -> bool:
    """One session until `until`: True when it ended by time, False after an error."""
    seen: list[str] = []

    async def on_response(response: httpx2.Response) -> None:
        sid = response.headers.get("mcp-session-id")
        if sid and not seen:
            seen.append(sid.split(".", 1)[0])

    client = create_mcp_http_client(timeout=httpx2.Timeout(10.0, read=10.0))
    client.event_hooks["response"].append(on_response)
    try:
        async with (
            client,
            streamable_http_client(url, http_client=client) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            rec["instances"].append(seen[0] if seen else "?")
            i = 0
            while time.monotonic() < until:
                i += 1
                with anyio.fail_after(10):
                    result = await session.call_tool("echo", {"message": f"{tag}-{i}"})
                if text_of(result.content) != f"Echo: {tag}-{i}":
                    raise RuntimeError(f"wrong answer: {text_of(result.content)!r}")
                rec["ok"] += 1
                await anyio.sleep(0.02)
        return True
    except BaseException as exc:  # noqa: BLE001 - a failure is recorded, then the client goes on
        if isinstance(exc, anyio.get_cancelled_exc_class()):
            raise
        if time.monotonic() >= until and rec["ok"] > 0:
            return True
        rec["errors"].append(describe(exc)[:200])
        return False


async def client(url: str, index: int, seconds: float, out: list[dict[str, Any]]) -> None:
    rec: dict[str, Any] = {"instances": [], "ok": 0, "errors": []}
    out.append(rec)
    until = time.monotonic() + seconds
    while time.monotonic() < until and len(rec["errors"]) < 20:
        if await one_session(url, f"c{index}", until, rec):
            break
        await anyio.sleep(0.05)


async def scale(url: str, args: list[str]) -> dict[str, Any]:
    if len(args) != 2:
        sys.stderr.write("usage: scale.py URL CLIENTS SECONDS\n")
        os._exit(2)
    n, seconds = int(args[0]), float(args[1])
    out: list[dict[str, Any]] = []
    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(client, url, i, seconds, out)
    return {"clients": out}


if __name__ == "__main__":
    run(scale, "URL CLIENTS SECONDS")

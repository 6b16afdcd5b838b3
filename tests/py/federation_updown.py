"""An upstream of a federation goes down and comes back, seen by one client session (#15).

    python tests/py/federation_updown.py URL PID PORT NODE EVERYTHING_JS

With the official SDK (mcp 2.3.0) ``ClientSession``: lists tools and calls ``web__echo``
(server-everything over HTTP, process PID on PORT); kills PID, calls ``web__echo`` again (a
JSON-RPC error naming the upstream) and waits for ``notifications/tools/list_changed``; lists
tools (no ``web__`` ones); starts server-everything again on PORT, waits for the next
``list_changed``, lists tools and calls ``web__echo`` once more. Stops what it started.

Prints e.g. {"before": 13, "downError": "...upstream web...", "whileDown": 0, "after": 13,
"changes": 2, "echo": "Echo: back"}
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from typing import Any

import anyio
import mcp_types as types
from _common import DriverError, describe, run, text_of
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client


def web_tools(tools: Any) -> int:
    return sum(1 for t in tools.tools if t.name.startswith("web__"))


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


async def updown(url: str, args: list[str]) -> dict[str, Any]:
    pid, port, node, everything = int(args[0]), int(args[1]), args[2], args[3]
    changes = 0
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        nonlocal changes, changed
        root = getattr(message, "root", message)
        if isinstance(root, types.ToolListChangedNotification):
            changes += 1
            changed.set()

    async def next_change(what: str) -> None:
        nonlocal changed
        with anyio.move_on_after(10):
            await changed.wait()
        if not changed.is_set():
            raise DriverError(f"no notifications/tools/list_changed {what}")
        changed = anyio.Event()

    out: dict[str, Any] = {}
    again = None
    try:
        async with (
            streamable_http_client(url) as (read, write),
            ClientSession(read, write, message_handler=on_message) as session,
        ):
            await session.initialize()
            out["before"] = web_tools(await session.list_tools())
            await session.call_tool("web__echo", {"message": "before"})

            os.kill(pid, signal.SIGTERM)
            while listening(port):
                await anyio.sleep(0.05)
            try:
                r = await session.call_tool("web__echo", {"message": "down"})
                out["downError"] = f"answered: {text_of(r.content)}"
            except Exception as e:  # noqa: BLE001 - the error is the point
                out["downError"] = describe(e)
            await next_change("when the upstream went down")
            changed = anyio.Event()
            out["whileDown"] = web_tools(await session.list_tools())

            again = subprocess.Popen(
                [node, everything, "streamableHttp"],
                env={**os.environ, "PORT": str(port)},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            while not listening(port):
                await anyio.sleep(0.05)
            # Other list_changed notifications may come (server-everything sends its own):
            # wait for one, look, and again until the tools are back (bounded).
            out["after"] = 0
            for _ in range(10):
                await next_change("when the upstream came back")
                out["after"] = web_tools(await session.list_tools())
                if out["after"]:
                    break
            r = await session.call_tool("web__echo", {"message": "back"})
            out["echo"] = text_of(r.content)
            out["changes"] = changes
    finally:
        if again is not None:
            again.terminate()
            again.wait(5)
    return out


if __name__ == "__main__":
    run(updown, "URL PID PORT NODE EVERYTHING_JS")

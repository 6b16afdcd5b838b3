"""A client that declares every capability a server may ask of it, and what a server offers it.

    python tests/py/capable.py URL

Legacy-era ``ClientSession`` (mcp 2.3.0) with sampling, elicitation (form and URL) and roots
callbacks, so it declares ``sampling``, ``elicitation`` and ``roots`` (``listChanged``). After
``initialize`` it lists the tools until two lists 300 ms apart agree (server-everything registers
its capability-dependent tools just after the handshake and announces them with
``notifications/tools/list_changed``), then, if the server has ``get-roots-list``, calls it: the
server asks the client ``roots/list`` and reports the answer. Prints e.g.
    {"tools": ["echo", ...], "rootsAsked": 1, "roots": "..."}
"""

from __future__ import annotations

from typing import Any

import anyio
import mcp_types as types
from _common import run, text_of
from mcp import ClientSession
from mcp.client.session import ClientRequestContext
from mcp.client.streamable_http import streamable_http_client

ROOT = "file:///tmp/shadowcat-capable-root"


async def capable(url: str, _args: list[str]) -> dict[str, Any]:
    asked = {"roots": 0}

    async def on_sampling(_ctx: ClientRequestContext, _params: types.CreateMessageRequestParams) -> Any:
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text="ok"),
            model="capable",
            stop_reason="endTurn",
        )

    async def on_elicitation(_ctx: ClientRequestContext, _params: types.ElicitRequestParams) -> Any:
        return types.ElicitResult(action="decline")

    async def on_roots(_ctx: ClientRequestContext) -> Any:
        asked["roots"] += 1
        return types.ListRootsResult(roots=[types.Root(uri=ROOT, name="capable")])

    out: dict[str, Any] = {}
    async with (
        streamable_http_client(url) as (read, write),
        ClientSession(
            read,
            write,
            sampling_callback=on_sampling,
            elicitation_callback=on_elicitation,
            list_roots_callback=on_roots,
        ) as session,
    ):
        await session.initialize()
        names: list[str] = []
        for _ in range(20):
            now = sorted(t.name for t in (await session.list_tools()).tools)
            if now == names:
                break
            names = now
            await anyio.sleep(0.3)
        out["tools"] = names
        if "get-roots-list" in names:
            r = await session.call_tool("get-roots-list", {})
            out["roots"] = text_of(r.content)
            out["rootsError"] = bool(r.is_error)
        out["rootsAsked"] = asked["roots"]
    return out


if __name__ == "__main__":
    run(capable, "URL")

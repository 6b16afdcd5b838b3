"""A client pinned to 2026-07-28: ``mcp.Client(url, mode="2026-07-28")`` (mcp 2.3.0).

    python tests/py/modern.py URL

No handshake: every request carries its ``_meta``. Lists tools, calls ``echo``, then
server-everything's ``trigger-sampling-request`` and ``trigger-elicitation-request``, which
the server (session era) makes as server-to-client requests and the proxy turns into
``InputRequiredResult``s: the SDK runs the callbacks and retries with ``inputResponses``.

Prints e.g.
    {"protocolVersion": "2026-07-28", "tools": [...], "echo": "Echo: hello through the bridge",
     "sampling": "...sampled through the bridge...", "samplingRequests": 1,
     "elicitation": "...", "elicitationRequests": 1}
"""

from __future__ import annotations

from typing import Any

import mcp_types as types
from _common import DriverError, run, text_of
from mcp import Client
from mcp.client.session import ClientRequestContext

SAMPLED = "sampled through the bridge"


async def modern(url: str, _args: list[str]) -> dict[str, Any]:
    seen = {"sampling": 0, "elicitation": 0}

    async def on_sampling(
        _ctx: ClientRequestContext, _params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        seen["sampling"] += 1
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=SAMPLED),
            model="test-model",
            stop_reason="endTurn",
        )

    async def on_elicitation(_ctx: ClientRequestContext, _params: types.ElicitRequestParams) -> types.ElicitResult:
        seen["elicitation"] += 1
        return types.ElicitResult(action="decline")

    out: dict[str, Any] = {}
    async with Client(
        url, mode="2026-07-28", sampling_callback=on_sampling, elicitation_callback=on_elicitation
    ) as client:
        out["protocolVersion"] = client.protocol_version
        tools = await client.list_tools()
        out["tools"] = [t.name for t in tools.tools]
        echo = await client.call_tool("echo", {"message": "hello through the bridge"})
        out["echo"] = text_of(echo.content)
        sampled = await client.call_tool("trigger-sampling-request", {"prompt": "hi", "maxTokens": 10})
        if sampled.is_error:
            raise DriverError(f"trigger-sampling-request failed: {text_of(sampled.content)!r}")
        out["sampling"] = text_of(sampled.content)
        elicited = await client.call_tool("trigger-elicitation-request", {})
        out["elicitation"] = text_of(elicited.content)
    out["samplingRequests"] = seen["sampling"]
    out["elicitationRequests"] = seen["elicitation"]
    return out


if __name__ == "__main__":
    run(modern, "URL")

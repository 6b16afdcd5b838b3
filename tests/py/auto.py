"""High-level ``mcp.Client(url)`` (mcp 2.3.0) in its default ``mode="auto"``.

    python tests/py/auto.py URL [--mode auto|legacy|2026-07-28]

Auto mode first POSTs a modern ``server/discover`` probe (MCP-Protocol-Version: 2026-07-28) and
falls back to the legacy ``initialize`` handshake on any JSON-RPC/HTTP error except a -32022
naming only modern versions (see mcp/client/_probe.py:negotiate_auto). The negotiated version is
``Client.protocol_version`` (= ``ClientSession.protocol_version``, set by initialize/discover/adopt).

Prints e.g.
    {"mode": "auto", "era": "legacy", "protocolVersion": "2025-11-25",
     "serverName": "mcp-servers/everything", "tools": [...], "echo": "Echo: hello through MCP"}
"""

from __future__ import annotations

import os
from typing import Any

from _common import DriverError, run, text_of
from mcp import Client
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

ECHO_MESSAGE = "hello through MCP"
# The echo tool to call: `demo__echo` behind a federation (env ECHO_TOOL).
ECHO_TOOL = os.environ.get("ECHO_TOOL", "echo")


def _parse_mode(args: list[str]) -> str:
    if not args:
        return "auto"
    if len(args) == 2 and args[0] == "--mode":
        return args[1]
    raise DriverError(f"unexpected arguments {args!r} (usage: auto.py URL [--mode MODE])")


async def auto(url: str, args: list[str]) -> dict[str, Any]:
    mode = _parse_mode(args)
    out: dict[str, Any] = {"mode": mode}
    async with Client(url, mode=mode) as client:
        version = client.protocol_version
        out["era"] = "modern" if version in MODERN_PROTOCOL_VERSIONS else "legacy"
        out["protocolVersion"] = version
        info = client.server_info  # may be None on a modern server that does not identify itself
        out["serverName"] = info.name if info else None

        tools = await client.list_tools()
        out["tools"] = [t.name for t in tools.tools]
        if ECHO_TOOL not in out["tools"]:
            raise DriverError(f"server has no {ECHO_TOOL!r} tool (tools: {out['tools']})")

        echo = await client.call_tool(ECHO_TOOL, {"message": ECHO_MESSAGE})
        out["echo"] = text_of(echo.content)
        if echo.is_error:
            raise DriverError(f"tools/call echo returned isError=true: {out['echo']!r}")
    return out


if __name__ == "__main__":
    run(auto, "URL [--mode auto|legacy|2026-07-28]")

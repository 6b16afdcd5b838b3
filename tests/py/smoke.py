"""Legacy-era smoke test through a Streamable HTTP endpoint with the official SDK (mcp 2.3.0).

    python tests/py/smoke.py URL

Uses the low-level ``streamable_http_client`` + ``ClientSession`` (the pure initialize-handshake
path, no server/discover probe) and runs: initialize, tools/list, tools/call echo,
resources/list, resources/read (first resource), ping.

Prints e.g.
    {"protocolVersion": "2025-11-25", "serverName": "mcp-servers/everything", ...,
     "tools": [...], "echo": "Echo: hello through MCP", "resources": 7,
     "firstResource": "demo://...", "readMimeType": "text/markdown", "ping": true}
"""

from __future__ import annotations

from typing import Any

from _common import DriverError, run, text_of
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

ECHO_MESSAGE = "hello through MCP"


async def smoke(url: str, _args: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with streamable_http_client(url) as (read, write), ClientSession(read, write) as session:
        init = await session.initialize()
        out["protocolVersion"] = init.protocol_version
        out["serverName"] = init.server_info.name
        out["serverVersion"] = init.server_info.version
        caps = init.capabilities.model_dump(exclude_none=True)
        out["capabilities"] = sorted(caps)

        tools = await session.list_tools()
        out["tools"] = [t.name for t in tools.tools]
        if "echo" not in out["tools"]:
            raise DriverError(f"server has no 'echo' tool (tools: {out['tools']})")

        echo = await session.call_tool("echo", {"message": ECHO_MESSAGE})
        out["echo"] = text_of(echo.content)
        if echo.is_error:
            raise DriverError(f"tools/call echo returned isError=true: {out['echo']!r}")

        resources = await session.list_resources()
        out["resources"] = len(resources.resources)
        if not resources.resources:
            raise DriverError("resources/list returned no resources, nothing to read")
        first = str(resources.resources[0].uri)
        out["firstResource"] = first

        read = await session.read_resource(first)
        if not read.contents:
            raise DriverError(f"resources/read {first} returned no contents")
        out["readMimeType"] = read.contents[0].mime_type
        out["readBytes"] = len(getattr(read.contents[0], "text", None) or getattr(read.contents[0], "blob", ""))

        await session.send_ping()
        out["ping"] = True
    return out


if __name__ == "__main__":
    run(smoke, "URL")

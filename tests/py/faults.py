"""Fault and mock rules seen by the official SDK (issue #18), against a proxy in front of the
demo server whose config file has the rules of tests/it/r18_faults.rs.

    python tests/py/faults.py URL

Calls echo four times: a mocked message, one an error rule answers, one a drop rule never
answers (the SDK's own 1 s read timeout ends it), and a plain one; then tools/list (delayed).

Prints e.g.
    {"mock": "mocked by shadowcat", "error": {"code": -32042, "message": "injected"},
     "drop": {"type": "MCPError", "code": -32001}, "plain": "Echo: plain", "tools": 5}
"""

from __future__ import annotations

from typing import Any

from _common import run, text_of
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client


def caught(exc: BaseException) -> dict[str, Any]:
    error = getattr(exc, "error", None)
    return {
        "type": type(exc).__name__,
        "code": getattr(error, "code", None),
        "message": getattr(error, "message", str(exc)),
    }


async def faults(url: str, _args: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with streamable_http_client(url) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        mocked = await session.call_tool("echo", {"message": "mock me"})
        out["mock"] = text_of(mocked.content)
        try:
            await session.call_tool("echo", {"message": "boom"})
            out["error"] = None
        except Exception as exc:  # noqa: BLE001 - the error is what is checked
            out["error"] = caught(exc)
        try:
            await session.call_tool("echo", {"message": "drop me"}, read_timeout_seconds=1.0)
            out["drop"] = None
        except Exception as exc:  # noqa: BLE001
            out["drop"] = caught(exc)
        plain = await session.call_tool("echo", {"message": "plain"})
        out["plain"] = text_of(plain.content)
        tools = await session.list_tools()
        out["tools"] = len(tools.tools)
    return out


if __name__ == "__main__":
    run(faults, "URL")

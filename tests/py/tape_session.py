"""A session worth recording, against server-everything (tests/it/tapes.rs records it).

    python tests/py/tape_session.py URL [SECRET]

Legacy-era ``ClientSession`` (mcp 2.3.0) with a sampling callback, then in this order:
tools/list; tools/call ``echo`` {message: "hello tape", api_token: SECRET} (server-everything
ignores the extra argument; the tape must not show it); tools/call
``trigger-long-running-operation`` {duration: 1, steps: 3} with a progress callback;
tools/call ``trigger-sampling-request`` {prompt: "tape prompt", maxTokens: 10}, answered by the
sampling callback; resources/list and resources/read of the first resource.

Prints what the client saw, e.g.
    {"protocolVersion": "2025-11-25", "tools": 15, "echo": "Echo: hello tape",
     "progress": [1.0, 2.0, 3.0], "sampling": {"requests": 1, "result": "..."},
     "resource": "demo://resource/static/document/architecture.md", "readBytes": 1234}
"""

from __future__ import annotations

from typing import Any

import mcp_types as types
from _common import DriverError, run, text_of
from mcp import ClientSession
from mcp.client.session import ClientRequestContext
from mcp.client.streamable_http import streamable_http_client

SAMPLING_TEXT = "a recorded answer from the client"


async def tape_session(url: str, args: list[str]) -> dict[str, Any]:
    secret = args[0] if args else "no-secret-given"
    sampled: list[Any] = []
    progress: list[float] = []

    async def on_sampling(
        _ctx: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        last = params.messages[-1].content if params.messages else None
        sampled.append(getattr(last, "text", None) if last is not None else None)
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=SAMPLING_TEXT),
            model="tape-model",
            stop_reason="endTurn",
        )

    async def on_progress(value: float, _total: float | None, _message: str | None) -> None:
        progress.append(value)

    out: dict[str, Any] = {}
    async with (
        streamable_http_client(url) as (read, write),
        ClientSession(read, write, sampling_callback=on_sampling) as session,
    ):
        init = await session.initialize()
        out["protocolVersion"] = init.protocol_version

        tools = await session.list_tools()
        names = [t.name for t in tools.tools]
        out["tools"] = len(names)
        for want in ("echo", "trigger-long-running-operation", "trigger-sampling-request"):
            if want not in names:
                raise DriverError(f"server has no {want!r} tool (tools: {names})")

        echo = await session.call_tool("echo", {"message": "hello tape", "api_token": secret})
        out["echo"] = text_of(echo.content)
        if echo.is_error:
            raise DriverError(f"echo returned isError=true: {out['echo']!r}")

        long = await session.call_tool(
            "trigger-long-running-operation", {"duration": 1, "steps": 3}, progress_callback=on_progress
        )
        if long.is_error:
            raise DriverError(f"trigger-long-running-operation returned isError=true: {text_of(long.content)!r}")
        out["progress"] = progress

        sample = await session.call_tool("trigger-sampling-request", {"prompt": "tape prompt", "maxTokens": 10})
        out["sampling"] = {"requests": len(sampled), "lastRequest": sampled[-1] if sampled else None,
                           "result": text_of(sample.content)}
        if sample.is_error or not sampled:
            raise DriverError(f"sampling did not happen: {out['sampling']}")

        resources = await session.list_resources()
        if not resources.resources:
            raise DriverError("resources/list returned no resources")
        first = str(resources.resources[0].uri)
        out["resource"] = first
        read_result = await session.read_resource(first)
        if not read_result.contents:
            raise DriverError(f"resources/read {first} returned no contents")
        out["readBytes"] = len(getattr(read_result.contents[0], "text", None) or "")
    return out


if __name__ == "__main__":
    run(tape_session, "URL [SECRET]")

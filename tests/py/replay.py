"""The scenario of tests/fixtures/tapes/demo-session.jsonl, through a Streamable HTTP endpoint.

    python tests/py/replay.py URL

Legacy-era ``ClientSession`` (mcp 2.3.0) with a sampling callback. Runs: initialize, tools/list,
tools/call echo {message: "hello"}, tools/call stream_events {count: 3, intervalMs: 10} with a
progress callback, tools/call test_sampling {prompt: "hi"}. Run against ``shadowcat replay`` of
that tape, or against the demo server it was taken from, it prints the same, e.g.
    {"protocolVersion": "2025-11-25", "serverName": "shadowcat-demo", "tools": [...],
     "echo": "Echo: hello", "progress": [[1, 3, "event 1"], ...], "logs": ["event 1", ...],
     "stream": "streamed 3 events",
     "sampling": {"requests": ["hi"], "result": "LLM response: ..."}}

Fails if a tool errors, or the sampling request never reached the callback.
"""

from __future__ import annotations

from typing import Any

import mcp_types as types
from _common import DriverError, run, text_of
from mcp import ClientSession
from mcp.client.session import ClientRequestContext
from mcp.client.streamable_http import streamable_http_client

SAMPLING_TEXT = "This is a test response from the client"


async def scenario(url: str, _args: list[str]) -> dict[str, Any]:
    asked: list[Any] = []
    logs: list[Any] = []

    async def on_sampling(
        _ctx: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        last = params.messages[-1].content if params.messages else None
        asked.append(getattr(last, "text", None))
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=SAMPLING_TEXT),
            model="test-model",
            stop_reason="endTurn",
        )

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.append(params.data)

    out: dict[str, Any] = {}
    async with (
        streamable_http_client(url) as (read, write),
        ClientSession(read, write, sampling_callback=on_sampling, logging_callback=on_log) as session,
    ):
        init = await session.initialize()
        out["protocolVersion"] = init.protocol_version
        out["serverName"] = init.server_info.name

        tools = await session.list_tools()
        out["tools"] = [t.name for t in tools.tools]

        echo = await session.call_tool("echo", {"message": "hello"})
        out["echo"] = text_of(echo.content)

        progress: list[Any] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append([value, total, message])

        stream = await session.call_tool(
            "stream_events", {"count": 3, "intervalMs": 10}, progress_callback=on_progress
        )
        out["stream"] = text_of(stream.content)
        out["progress"] = progress
        out["logs"] = logs

        sampled = await session.call_tool("test_sampling", {"prompt": "hi"})
        out["sampling"] = {"requests": asked, "result": text_of(sampled.content)}

        for name, result in (("echo", echo), ("stream_events", stream), ("test_sampling", sampled)):
            if result.is_error:
                raise DriverError(f"tools/call {name} returned isError=true: {text_of(result.content)!r}")
        if not asked:
            raise DriverError("tools/call test_sampling succeeded but no sampling request reached the client")
    return out


if __name__ == "__main__":
    run(scenario, "URL")

"""Server-to-client requests and progress through a federation (issue #15).

    python tests/py/federation_s2c.py URL PREFIX...

With the official SDK (mcp 2.3.0) ``ClientSession`` that declares sampling: for each PREFIX
(a server-everything member, e.g. ``ev__``), calls ``PREFIX trigger-sampling-request``
(server-everything asks the client for a completion mid-call; the callback answers) and
``PREFIX trigger-long-running-operation`` with a progress callback.

Prints e.g. {"ev__": {"sampled": true, "progress": 3}, "web__": {...}, "samplingRequests": 2}
"""

from __future__ import annotations

from typing import Any

import mcp_types as types
from _common import DriverError, run, text_of
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

ANSWER = "sampled through the federation"


async def s2c(url: str, args: list[str]) -> dict[str, Any]:
    asked: list[str] = []

    async def on_sampling(_ctx: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        asked.append("x")
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=ANSWER),
            model="test-model",
            stop_reason="endTurn",
        )

    out: dict[str, Any] = {}
    async with (
        streamable_http_client(url) as (read, write),
        ClientSession(read, write, sampling_callback=on_sampling) as session,
    ):
        await session.initialize()
        for prefix in args:
            steps: list[float] = []

            async def on_progress(progress: float, _total: float | None, _message: str | None) -> None:
                steps.append(progress)

            sampled = await session.call_tool(prefix + "trigger-sampling-request", {"prompt": "hi", "maxTokens": 10})
            if sampled.is_error or ANSWER not in text_of(sampled.content):
                raise DriverError(f"{prefix}: sampling answer not relayed: {text_of(sampled.content)!r}")
            slow = await session.call_tool(
                prefix + "trigger-long-running-operation", {"duration": 1, "steps": 3}, progress_callback=on_progress
            )
            if slow.is_error:
                raise DriverError(f"{prefix}: long-running operation failed: {text_of(slow.content)!r}")
            out[prefix] = {"sampled": True, "progress": len(steps)}
    out["samplingRequests"] = len(asked)
    return out


if __name__ == "__main__":
    run(s2c, "URL PREFIX...")

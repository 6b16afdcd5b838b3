"""Server-to-client requests and progress through a federation (issue #15).

    python tests/py/federation_s2c.py URL PREFIX...

With the official SDK (mcp 2.3.0) ``ClientSession`` that declares sampling: for each PREFIX
(a server-everything member, e.g. ``ev__``), calls ``PREFIX trigger-sampling-request``
(server-everything asks the client for a completion mid-call; the callback answers) and
``PREFIX trigger-long-running-operation`` with a progress callback.

Then asks every PREFIX at once, each answer naming the prompt it answers.

Prints e.g. {"ev__": {"sampled": true, "progress": 3}, "web__": {...}, "together": 2,
"samplingRequests": 4}
"""

from __future__ import annotations

from typing import Any

import anyio

import mcp_types as types
from _common import DriverError, run, text_of
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

ANSWER = "sampled through the federation"


async def s2c(url: str, args: list[str]) -> dict[str, Any]:
    asked: list[str] = []

    async def on_sampling(_ctx: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        last = params.messages[-1].content if params.messages else None
        prompt = getattr(last, "text", "")
        asked.append(prompt)
        # Held a moment, so that requests of several members are open at once.
        await anyio.sleep(0.3)
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=f"{ANSWER} for {prompt}"),
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

        # All members at once: each ask goes to this client and each answer back to the member
        # that asked (they number their requests alike), which shows it the prompt it sent.
        together: dict[str, str] = {}

        async def ask(prefix: str) -> None:
            r = await session.call_tool(prefix + "trigger-sampling-request", {"prompt": f"from {prefix}", "maxTokens": 10})
            together[prefix] = text_of(r.content)

        async with anyio.create_task_group() as tg:
            for prefix in args:
                tg.start_soon(ask, prefix)
        for prefix in args:
            text = together.get(prefix, "")
            if f"from {prefix}" not in text or any(f"from {o}" in text for o in args if o != prefix):
                raise DriverError(f"{prefix}: got another member's answer: {together.get(prefix)!r}")
        out["together"] = len(together)
    out["samplingRequests"] = len(asked)
    return out


if __name__ == "__main__":
    run(s2c, "URL PREFIX...")

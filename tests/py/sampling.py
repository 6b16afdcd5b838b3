"""Server->client requests (sampling, elicitation) through a Streamable HTTP endpoint.

    python tests/py/sampling.py URL [PREFIX]

Legacy-era ``ClientSession`` (mcp 2.3.0) that declares the sampling and elicitation capabilities
by installing callbacks:

* sampling_callback answers every ``sampling/createMessage`` with a fixed assistant text;
* elicitation_callback accepts every ``elicitation/create`` with fixed content.

Then calls tool ``test_sampling`` {prompt: "hi"} and ``test_elicitation`` {message: "name?"}
(conformance fixture names, after PREFIX when given: `demo__` behind a federation) and prints what the server asked and what the tools returned, e.g.
    {"protocolVersion": "2025-11-25",
     "sampling": {"requests": 1, "lastRequest": "hi", "result": "...", "isError": false},
     "elicitation": {"requests": 1, "lastRequest": "name?", "result": "...", "isError": false}}

Fails if either tool errors or the server never sent the corresponding request to the client.
"""

from __future__ import annotations

from typing import Any

import mcp_types as types
from _common import DriverError, run, text_of
from mcp import ClientSession
from mcp.client.session import ClientRequestContext
from mcp.client.streamable_http import streamable_http_client

# Same canned answers as the conformance suite's client side.
SAMPLING_TEXT = "This is a test response from the client"
SAMPLING_MODEL = "test-model"
ELICIT_CONTENT = {"username": "testuser", "email": "test@example.com"}


async def sampling(url: str, args: list[str]) -> dict[str, Any]:
    prefix = args[0] if args else ""
    seen: dict[str, list[Any]] = {"sampling": [], "elicitation": []}

    async def on_sampling(
        _ctx: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        # Record the text of the last message the server wants "the LLM" to see.
        last = params.messages[-1].content if params.messages else None
        seen["sampling"].append(getattr(last, "text", None) if last is not None else None)
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=SAMPLING_TEXT),
            model=SAMPLING_MODEL,
            stop_reason="endTurn",
        )

    async def on_elicitation(_ctx: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
        seen["elicitation"].append(getattr(params, "message", None))
        return types.ElicitResult(action="accept", content=dict(ELICIT_CONTENT))

    out: dict[str, Any] = {}
    async with (
        streamable_http_client(url) as (read, write),
        ClientSession(read, write, sampling_callback=on_sampling, elicitation_callback=on_elicitation) as session,
    ):
        init = await session.initialize()
        out["protocolVersion"] = init.protocol_version
        out["serverName"] = init.server_info.name

        for key, tool, arguments in (
            ("sampling", "test_sampling", {"prompt": "hi"}),
            ("elicitation", "test_elicitation", {"message": "name?"}),
        ):
            tool = prefix + tool
            result = await session.call_tool(tool, arguments)
            text = text_of(result.content)
            out[key] = {
                "requests": len(seen[key]),
                "lastRequest": seen[key][-1] if seen[key] else None,
                "result": text,
                "isError": bool(result.is_error),
            }
            if result.is_error:
                raise DriverError(f"tools/call {tool} returned isError=true: {text!r}")
            if not seen[key]:
                raise DriverError(f"tools/call {tool} succeeded but the server never sent a {key} request")
    return out


if __name__ == "__main__":
    run(sampling, "URL [PREFIX]")

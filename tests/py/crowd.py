"""Many concurrent clients through one endpoint: does every server-to-client request, result and
log message reach the client it belongs to?

    python tests/py/crowd.py URL SERVER MIX CALLS

SERVER is ``demo`` (shadowcat's demo server: tools ``echo``, ``test_sampling``,
``test_elicitation``, ``stream_events``) or ``everything`` (server-everything: ``echo``,
``trigger-sampling-request``, ``trigger-elicitation-request``). MIX is comma-separated
``kind=count`` with kinds

* ``echo``: a client that declares no capabilities and calls ``echo`` with its own tag;
* ``sampling``: declares ``sampling`` and calls the sampling tool with its own tag as the prompt;
  its callback answers with its own tag, so a request or result that went to another client shows;
* ``elicitation``: declares ``elicitation`` and calls the elicitation tool; its callback accepts
  with its own tag as the name/username;
* ``events``: declares no capabilities, sets its log level to ``debug`` (it asks for log
  messages) and calls the demo's ``stream_events`` {count: 25 + i, intervalMs: 5} for its index
  i, collecting the log messages of each call: it must get exactly ``event 1`` … ``event N``
  of its own N, in order, and nothing else;
* ``plainevents``: the same without ``logging/setLevel``.

Every client runs CALLS calls one after the other (``events`` clients: CALLS // 10, at least 1);
all clients run at once. Prints, per kind, the calls that succeeded and failed, the first few
failure messages, and for event clients the log messages expected and received (own and
foreign), e.g.
    {"sampling": {"clients": 5, "ok": 100, "failed": 0, "errors": []}, ...}

Exits 0 whenever every client ran (the caller judges the counts); 1 if the run itself broke.
"""

from __future__ import annotations

import os
import re
from typing import Any

# A crowd takes longer than one client: the default driver timeout (15 s) is for one.
os.environ.setdefault("MCP_DRIVER_TIMEOUT", "60")

import anyio  # noqa: E402
import mcp_types as types  # noqa: E402
from _common import DriverError, describe, run, text_of  # noqa: E402
from mcp import ClientSession  # noqa: E402
from mcp.client.session import ClientRequestContext  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402

TOOLS = {
    "demo": {"sampling": "test_sampling", "elicitation": "test_elicitation"},
    "everything": {"sampling": "trigger-sampling-request", "elicitation": "trigger-elicitation-request"},
}


def _tally(out: dict[str, Any], kind: str) -> dict[str, Any]:
    return out.setdefault(kind, {"clients": 0, "ok": 0, "failed": 0, "errors": []})


def _fail(t: dict[str, Any], why: str) -> None:
    t["failed"] += 1
    if len(t["errors"]) < 5:
        t["errors"].append(why[:300])


async def client(url: str, server: str, kind: str, index: int, calls: int, out: dict[str, Any]) -> None:
    tag = f"{kind}-{index}"
    t = _tally(out, kind)
    t["clients"] += 1
    asked: list[str] = []
    logs: list[str] = []

    async def on_sampling(_ctx: ClientRequestContext, params: types.CreateMessageRequestParams) -> Any:
        last = params.messages[-1].content if params.messages else None
        asked.append(getattr(last, "text", "") or "")
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=f"answer for {tag}"),
            model="crowd",
            stop_reason="endTurn",
        )

    async def on_elicitation(_ctx: ClientRequestContext, params: types.ElicitRequestParams) -> Any:
        asked.append(getattr(params, "message", "") or "")
        return types.ElicitResult(action="accept", content={"username": tag, "name": tag, "email": "c@example.com"})

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.append(str(params.data))

    kwargs: dict[str, Any] = {}
    if kind == "sampling":
        kwargs["sampling_callback"] = on_sampling
    if kind == "elicitation":
        kwargs["elicitation_callback"] = on_elicitation
    if kind in ("events", "plainevents"):
        kwargs["logging_callback"] = on_log
    try:
        async with (
            streamable_http_client(url) as (read, write),
            ClientSession(read, write, **kwargs) as session,
        ):
            await session.initialize()
            if kind == "events":
                await session.set_logging_level("debug")
            n = calls if kind not in ("events", "plainevents") else max(1, calls // 10)
            for i in range(n):
                call_tag = f"{tag}/{i}"
                try:
                    if kind == "echo":
                        r = await session.call_tool("echo", {"message": call_tag})
                        ok = not r.is_error and call_tag in text_of(r.content)
                    elif kind == "sampling":
                        before = len(asked)
                        r = await session.call_tool(TOOLS[server]["sampling"], {"prompt": call_tag})
                        text = text_of(r.content)
                        ok = (
                            not r.is_error
                            and f"answer for {tag}" in text
                            and len(asked) == before + 1
                            and call_tag in asked[-1]
                        )
                    elif kind == "elicitation":
                        before = len(asked)
                        args = {"message": call_tag} if server == "demo" else {}
                        r = await session.call_tool(TOOLS[server]["elicitation"], args)
                        text = text_of(r.content)
                        ok = not r.is_error and tag in text and len(asked) == before + 1
                        if server == "demo":
                            ok = ok and asked[-1] == call_tag
                    else:
                        count = 25 + index
                        logs.clear()
                        r = await session.call_tool("stream_events", {"count": count, "intervalMs": 5})
                        # Log messages travel before the result on the same stream.
                        want = [f"event {k}" for k in range(1, count + 1)]
                        got = list(logs)
                        own = sum(1 for m in got if re.fullmatch(r"event \d+", m) and int(m.split()[1]) <= count)
                        e = out.setdefault(f"{kind}Logs", {"expected": 0, "received": 0, "exact": 0})
                        e["expected"] += count
                        e["received"] += len(got)
                        e["exact"] += int(got == want)
                        ok = not r.is_error and got == want
                        if not ok:
                            _fail(t, f"{call_tag}: {len(got)} logs of {count} (own-looking {own}): {got[:3]}…")
                            continue
                    if ok:
                        t["ok"] += 1
                    else:
                        _fail(t, f"{call_tag}: {text_of(r.content)!r} asked={asked[-1:]}")
                except Exception as exc:  # noqa: BLE001 - every failure is counted, not raised
                    _fail(t, f"{call_tag}: {describe(exc)}")
    except BaseException as exc:  # noqa: BLE001
        if isinstance(exc, anyio.get_cancelled_exc_class()):
            raise
        _fail(t, f"{tag}: session broke: {describe(exc)}")


async def crowd(url: str, args: list[str]) -> dict[str, Any]:
    if len(args) != 3:
        raise DriverError("usage: crowd.py URL SERVER MIX CALLS")
    server, mix, calls = args[0], args[1], int(args[2])
    if server not in TOOLS:
        raise DriverError(f"unknown server {server!r}")
    out: dict[str, Any] = {}
    async with anyio.create_task_group() as tg:
        for part in mix.split(","):
            kind, count = part.split("=")
            for i in range(int(count)):
                tg.start_soon(client, url, server, kind, i, calls, out)
    return out


if __name__ == "__main__":
    run(crowd, "URL SERVER MIX CALLS")

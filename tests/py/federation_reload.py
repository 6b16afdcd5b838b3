"""Reload under load (issue #15): clients keep calling while the federation's members change.

    python tests/py/federation_reload.py URL CONFIG NEW_CONFIG PID

With the official SDK (mcp 2.3.0) ``ClientSession``: 8 clients call ``keep__echo`` and
``change__slow_echo`` (100 ms, so that calls are in flight when it is replaced) in a loop. Once each made 3 rounds, CONFIG is overwritten with NEW_CONFIG's
text and PID (the proxy) gets SIGHUP. The clients go on until each made 5 more rounds after
a ninth session, the watcher, got ``notifications/tools/list_changed`` (at most 100 rounds
after the reload). Then the watcher lists the tools, calls ``add__echo`` (added by the
reload) and ``gone__echo`` (removed by it).

Prints e.g. {"calls": {"keep": {"ok": 96, "failed": []}, "change": {...}},
"listChanged": 9, "tools": [...], "added": "Echo: ...", "removed": "MCPError ..."}
"""

from __future__ import annotations

import os
import signal
from typing import Any

import anyio
import mcp_types as types
from _common import describe, run, text_of
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

CLIENTS = 8
BEFORE = 3
AFTER = 5
BOUND = 100
CALLS = {"keep": ("keep__echo", {}), "change": ("change__slow_echo", {"delayMs": 100})}


async def reload_under_load(url: str, args: list[str]) -> dict[str, Any]:
    config, new_config, pid = args[0], args[1], int(args[2])
    stats: dict[str, dict[str, Any]] = {m: {"ok": 0, "failed": []} for m in ("keep", "change")}
    rounds = [0] * CLIENTS
    after = [0] * CLIENTS
    reloaded = anyio.Event()
    changed = anyio.Event()
    told: set[int] = set()

    def handler(who: int):
        async def on_message(message: Any) -> None:
            root = getattr(message, "root", message)
            if isinstance(root, types.ToolListChangedNotification):
                told.add(who)
                if who == CLIENTS:
                    changed.set()

        return on_message

    def reload() -> None:
        with open(new_config, encoding="utf-8") as f:
            text = f.read()
        with open(config, "w", encoding="utf-8") as f:
            f.write(text)
        os.kill(pid, signal.SIGHUP)
        reloaded.set()

    async def client(k: int) -> None:
        async with (
            streamable_http_client(url) as (read, write),
            ClientSession(read, write, message_handler=handler(k)) as s,
        ):
            await s.initialize()
            while True:
                if changed.is_set() and after[k] >= AFTER:
                    break
                if reloaded.is_set() and after[k] >= BOUND:
                    break
                for member in ("keep", "change"):
                    message = f"c{k}-{rounds[k]}-{member}"
                    # The replaced member's calls take a while, so that some are in flight
                    # when the reload swaps it: they must finish on the old one (drain).
                    tool, args = CALLS[member]
                    try:
                        r = await s.call_tool(tool, {"message": message, **args})
                        if r.is_error or message not in text_of(r.content):
                            stats[member]["failed"].append(text_of(r.content))
                        else:
                            stats[member]["ok"] += 1
                    except Exception as e:  # noqa: BLE001 - a failed call is what is counted
                        stats[member]["failed"].append(describe(e))
                rounds[k] += 1
                if reloaded.is_set():
                    after[k] += 1
                if not reloaded.is_set() and all(n >= BEFORE for n in rounds):
                    reload()

    out: dict[str, Any] = {}
    async with (
        streamable_http_client(url) as (read, write),
        ClientSession(read, write, message_handler=handler(CLIENTS)) as watcher,
    ):
        await watcher.initialize()
        await watcher.list_tools()
        async with anyio.create_task_group() as tg:
            for k in range(CLIENTS):
                tg.start_soon(client, k)
        out["calls"] = stats
        out["rounds"] = rounds
        out["listChanged"] = len(told)
        out["watcherToldBeforeTheEnd"] = changed.is_set()
        out["tools"] = [t.name for t in (await watcher.list_tools()).tools]
        r = await watcher.call_tool("add__echo", {"message": "added"})
        out["added"] = text_of(r.content)
        try:
            r = await watcher.call_tool("gone__echo", {"message": "removed"})
            out["removed"] = {"isError": bool(r.is_error), "text": text_of(r.content)}
        except Exception as e:  # noqa: BLE001 - the error is what the test looks at
            out["removed"] = describe(e)
    return out


if __name__ == "__main__":
    run(reload_under_load, "URL CONFIG NEW_CONFIG PID")

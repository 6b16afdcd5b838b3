"""What members send outside requests reaches the client through a federation (issue #15).

    python tests/py/federation_notify.py URL

With the official SDK (mcp 2.3.0) ``ClientSession``: lists resources, subscribes to
``test://watched-resource`` (the demo's), calls ``demo__update_watched`` and waits for the
``notifications/resources/updated`` that the demo member sends on the standalone stream.

Prints e.g. {"subscribed": true, "updated": ["test://watched-resource"]}
"""

from __future__ import annotations

from typing import Any

import anyio
import mcp_types as types
from _common import DriverError, run
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

WATCHED = "test://watched-resource"


async def notify(url: str, _args: list[str]) -> dict[str, Any]:
    updated: list[str] = []
    got = anyio.Event()

    async def on_message(message: Any) -> None:
        root = getattr(message, "root", message)
        if isinstance(root, types.ResourceUpdatedNotification):
            updated.append(str(root.params.uri))
            got.set()

    out: dict[str, Any] = {}
    async with (
        streamable_http_client(url) as (read, write),
        ClientSession(read, write, message_handler=on_message) as session,
    ):
        await session.initialize()
        await session.list_resources()
        await session.subscribe_resource(WATCHED)
        out["subscribed"] = True
        await session.call_tool("demo__update_watched", {})
        with anyio.move_on_after(5):
            await got.wait()
        out["updated"] = updated
        if not updated:
            raise DriverError("no notifications/resources/updated arrived")
    return out


if __name__ == "__main__":
    run(notify, "URL")

"""Bearer-token authentication through the proxy, with the official SDK (mcp 2.3.0).

    python tests/py/auth.py URL TOKEN

1. POSTs initialize without a token and expects 401 with a ``WWW-Authenticate`` challenge
   naming ``resource_metadata``;
2. fetches that RFC 9728 document and validates it with the SDK's own
   ``ProtectedResourceMetadata`` model (what an SDK OAuth client would parse);
3. connects with the SDK's ``streamable_http_client``, its HTTP client carrying
   ``Authorization: Bearer TOKEN``, and runs initialize and tools/call echo.

Prints e.g.
    {"unauthorized": 401, "challenge": "Bearer resource_metadata=\"...\"",
     "metadata": {"resource": "...", ...}, "protocolVersion": "2025-11-25", "echo": "..."}
"""

from __future__ import annotations

import re
from typing import Any

import httpx2
from _common import DriverError, run, text_of
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.auth import ProtectedResourceMetadata

INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "auth-driver", "version": "1"},
    },
}


async def auth(url: str, args: list[str]) -> dict[str, Any]:
    if len(args) != 1:
        raise DriverError("usage: auth.py URL TOKEN")
    token = args[0]
    out: dict[str, Any] = {}
    async with httpx2.AsyncClient(timeout=10) as plain:
        r = await plain.post(
            url,
            json=INIT,
            headers={"Accept": "application/json, text/event-stream"},
        )
        out["unauthorized"] = r.status_code
        challenge = r.headers.get("www-authenticate", "")
        out["challenge"] = challenge
        m = re.search(r'resource_metadata="([^"]+)"', challenge)
        if not m:
            raise DriverError(f"no resource_metadata in the challenge: {challenge!r}")
        doc = await plain.get(m.group(1))
        if doc.status_code != 200:
            raise DriverError(f"metadata: HTTP {doc.status_code}")
        meta = ProtectedResourceMetadata.model_validate_json(doc.content)
        out["metadata"] = meta.model_dump(mode="json", exclude_none=True)

    headers = {"Authorization": f"Bearer {token}"}
    async with (
        create_mcp_http_client(headers=headers) as client,
        streamable_http_client(url, http_client=client) as (read, write),
        ClientSession(read, write) as session,
    ):
        init = await session.initialize()
        out["protocolVersion"] = init.protocol_version
        echo = await session.call_tool("echo", {"message": "authenticated"})
        out["echo"] = text_of(echo.content)
    return out


if __name__ == "__main__":
    run(auth, "auth.py URL TOKEN")

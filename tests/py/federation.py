"""Several upstreams behind one endpoint (issue #15), seen by the official SDK (mcp 2.3.0).

    python tests/py/federation.py URL PLAN

PLAN is JSON: {"calls": [[tool, {arguments}], ...], "prompts": [[prompt, {arguments}], ...],
"reads": [uri, ...], "completions": [["prompt" or "template", name or URI template, argument,
value], ...]}. With the low-level ``ClientSession`` (initialize handshake), the driver
initializes, lists tools, prompts, resources and resource templates (every page), then makes
each call, prompt get and read in turn. A call that fails is recorded, not fatal.

Prints e.g.
    {"instructions": "...", "capabilities": [...], "tools": [...], "prompts": [...],
     "resources": [...], "templates": [...], "pages": {"tools": 1, ...},
     "calls": {"demo__echo": {"text": "...", "isError": false}, "gone__x": {"error": "..."}},
     "gets": {...}, "reads": {"demo://x": {"mimeType": "text/plain"}}}
"""

from __future__ import annotations

import json
from typing import Any

import mcp_types as types
from _common import describe, run, text_of
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client


async def every_page(fetch: Any, items: str) -> tuple[list[Any], int]:
    out: list[Any] = []
    cursor = None
    pages = 0
    while True:
        params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
        page = await fetch(params=params)
        pages += 1
        out.extend(getattr(page, items))
        cursor = page.next_cursor
        if not cursor or pages > 50:
            return out, pages


async def federation(url: str, args: list[str]) -> dict[str, Any]:
    plan = json.loads(args[0]) if args else {}
    out: dict[str, Any] = {"calls": {}, "gets": {}, "reads": {}, "pages": {}}
    async with streamable_http_client(url) as (read, write), ClientSession(read, write) as session:
        init = await session.initialize()
        out["protocolVersion"] = init.protocol_version
        out["instructions"] = init.instructions
        out["capabilities"] = sorted(init.capabilities.model_dump(exclude_none=True))

        tools, out["pages"]["tools"] = await every_page(session.list_tools, "tools")
        out["tools"] = [t.name for t in tools]
        prompts, out["pages"]["prompts"] = await every_page(session.list_prompts, "prompts")
        out["prompts"] = [p.name for p in prompts]
        resources, out["pages"]["resources"] = await every_page(session.list_resources, "resources")
        out["resources"] = [str(r.uri) for r in resources]
        templates, out["pages"]["templates"] = await every_page(
            session.list_resource_templates, "resource_templates"
        )
        out["templates"] = [t.uri_template for t in templates]

        for name, arguments in plan.get("calls", []):
            try:
                r = await session.call_tool(name, arguments)
                out["calls"][name] = {"text": text_of(r.content), "isError": bool(r.is_error)}
            except Exception as e:  # noqa: BLE001 - the error is what the test looks at
                out["calls"][name] = {"error": describe(e)}
        for name, arguments in plan.get("prompts", []):
            try:
                r = await session.get_prompt(name, arguments)
                out["gets"][name] = {"messages": len(r.messages)}
            except Exception as e:  # noqa: BLE001
                out["gets"][name] = {"error": describe(e)}
        for uri in plan.get("reads", []):
            try:
                r = await session.read_resource(uri)
                out["reads"][uri] = {"mimeType": r.contents[0].mime_type if r.contents else None}
            except Exception as e:  # noqa: BLE001
                out["reads"][uri] = {"error": describe(e)}
        out["completions"] = {}
        for kind, target, arg, value in plan.get("completions", []):
            ref = (
                types.PromptReference(type="ref/prompt", name=target)
                if kind == "prompt"
                else types.ResourceTemplateReference(type="ref/resource", uri=target)
            )
            try:
                r = await session.complete(ref, {"name": arg, "value": value})
                out["completions"][target] = {"values": r.completion.values}
            except Exception as e:  # noqa: BLE001
                out["completions"][target] = {"error": describe(e)}
        await session.send_ping()
        out["ping"] = True
    return out


if __name__ == "__main__":
    run(federation, "URL PLAN")

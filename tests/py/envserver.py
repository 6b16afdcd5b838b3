"""A stdio MCP server built on the official SDK's MCPServer (mcp 2.3.0), for the --stdio-env tests.

    python tests/py/envserver.py

One tool, ``getenv(name)``: the value of an environment variable of this process, or
"<unset>". Test fixture only: it tells any client its environment.
"""

from __future__ import annotations

import os

from mcp.server.mcpserver import MCPServer

server = MCPServer("envserver")


@server.tool()
def getenv(name: str) -> str:
    """The value of environment variable NAME, or <unset>."""
    return os.environ.get(name, "<unset>")


if __name__ == "__main__":
    server.run()

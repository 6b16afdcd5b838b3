// The official TypeScript SDK as a client: node tests/js/client.mjs URL
// Connects over Streamable HTTP, lists tools, calls echo (and a progress tool when the server has
// one: the demo's test_tool_with_progress or server-everything's trigger-long-running-operation),
// pings, closes; prints one JSON object. Exits non-zero with a message on failure.
// With MCP_BEARER_TOKEN set, every request carries "Authorization: Bearer <token>".
// With TOOL_PREFIX set (e.g. `ev__` behind a federation), tool names carry it.
import { createRequire } from "node:module";
import path from "node:path";

const peers = process.env.SHADOWCAT_PEERS || path.resolve(import.meta.dirname, "../../.peers");
const require = createRequire(path.join(peers, "npm", "package.json"));
const { Client } = await import(require.resolve("@modelcontextprotocol/sdk/client/index.js"));
const { StreamableHTTPClientTransport } = await import(
  require.resolve("@modelcontextprotocol/sdk/client/streamableHttp.js")
);

const url = process.argv[2];
const prefix = process.env.TOOL_PREFIX || "";
const timer = setTimeout(() => {
  console.error("client.mjs: FAIL: timed out");
  process.exit(3);
}, 20000);

try {
  const client = new Client({ name: "shadowcat-it", version: "1.0.0" });
  const token = process.env.MCP_BEARER_TOKEN;
  const transport = new StreamableHTTPClientTransport(
    new URL(url),
    token ? { requestInit: { headers: { Authorization: `Bearer ${token}` } } } : undefined,
  );
  await client.connect(transport);
  const tools = (await client.listTools()).tools.map((t) => t.name);
  const echo = await client.callTool({ name: `${prefix}echo`, arguments: { message: "hello from TS" } });
  const out = {
    protocolVersion: transport.protocolVersion,
    sessionId: Boolean(transport.sessionId),
    server: client.getServerVersion()?.name,
    tools,
    echo: echo.content?.[0]?.text,
  };
  if (tools.includes(`${prefix}test_tool_with_progress`)) {
    const progress = [];
    await client.callTool(
      { name: `${prefix}test_tool_with_progress`, arguments: {} },
      undefined,
      { onprogress: (p) => progress.push(p.progress) },
    );
    out.progress = progress;
  } else if (tools.includes(`${prefix}trigger-long-running-operation`)) {
    // server-everything: three progress notifications, 0.1 s apart.
    const progress = [];
    await client.callTool(
      { name: `${prefix}trigger-long-running-operation`, arguments: { duration: 0.3, steps: 3 } },
      undefined,
      { onprogress: (p) => progress.push(p.progress) },
    );
    out.progress = progress;
  }
  await client.ping();
  out.ping = true;
  await transport.terminateSession();
  await client.close();
  console.log(JSON.stringify(out));
  clearTimeout(timer);
} catch (e) {
  console.error(`client.mjs: FAIL: ${e?.stack || e}`);
  process.exit(1);
}

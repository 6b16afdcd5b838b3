// The browser test's client (tests/it/browser.rs), loaded by index.html: the official SDK's
// Client over Streamable HTTP to the shadowcat named by ?mcp=URL, from this page's origin.
// Initializes, lists tools, calls echo and test_tool_with_progress (collecting the progress
// notifications), ends the session with DELETE and closes. Writes one JSON object into #result:
// the outcome, or {"error": "..."} when anything fails (a refused origin fails at initialize),
// then tells the test server it is done (GET /done), which lets the page finish loading.

const out = {};
const finish = async () => {
  document.getElementById("result").textContent = JSON.stringify(out);
  try {
    await fetch("/done");
  } catch {
    // The test server ends the page at its own deadline anyway.
  }
};

try {
  const { Client } = await import("@modelcontextprotocol/sdk/client/index.js");
  const { StreamableHTTPClientTransport } = await import(
    "@modelcontextprotocol/sdk/client/streamableHttp.js"
  );
  const url = new URL(new URLSearchParams(location.search).get("mcp"));
  out.origin = location.origin;
  const client = new Client({ name: "shadowcat-browser", version: "1.0.0" });
  const transport = new StreamableHTTPClientTransport(url);
  await client.connect(transport);
  out.sessionId = Boolean(transport.sessionId);
  out.protocolVersion = transport.protocolVersion;
  out.server = client.getServerVersion()?.name;
  out.tools = (await client.listTools()).tools.map((t) => t.name);
  const echo = await client.callTool({ name: "echo", arguments: { message: "hello from a browser" } });
  out.echo = echo.content?.[0]?.text;
  const progress = [];
  await client.callTool({ name: "test_tool_with_progress", arguments: {} }, undefined, {
    onprogress: (p) => progress.push(p.progress),
  });
  out.progress = progress;
  await transport.terminateSession();
  out.terminated = transport.sessionId === undefined;
  await client.close();
  out.closed = true;
} catch (e) {
  out.error = String(e?.message || e);
}
await finish();

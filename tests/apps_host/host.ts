/**
 * A small MCP Apps host for the tests: the official host side of the bridge (`AppBridge` from
 * @modelcontextprotocol/ext-apps) and the official TypeScript MCP client over streamable HTTP to the
 * server under test. `kkHost.show(tool, args)` calls the tool, reads the `ui://` view its
 * `_meta.ui.resourceUri` names and renders it as a host does: an iframe sandboxed to scripts only (no
 * same-origin, no forms, no popups) holding the document, under the Content-Security-Policy its
 * `_meta.ui.csp` allows. Calls the view makes go through the bridge; a call of a tool that is not
 * read-only waits for the person's approval in this page (Allow / Deny).
 */
import { AppBridge, PostMessageTransport, getToolUiResourceUri } from "@modelcontextprotocol/ext-apps/app-bridge";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { CallToolResult, Tool } from "@modelcontextprotocol/sdk/types.js";

const UI_EXTENSION = "io.modelcontextprotocol/ui";
const APP_MIME = "text/html;profile=mcp-app";
export const SANDBOX = "allow-scripts";

interface Csp {
  connectDomains?: string[];
  resourceDomains?: string[];
  frameDomains?: string[];
  baseUriDomains?: string[];
}

const token = new URLSearchParams(location.search).get("token");
let client: Client | null = null;
const tools = new Map<string, Tool>();
let shown = 0;

async function connect(): Promise<Client> {
  if (client) return client;
  const transport = new StreamableHTTPClientTransport(new URL("/mcp", location.href), {
    requestInit: token ? { headers: { Authorization: `Bearer ${token}` } } : undefined,
  });
  const connected = new Client(
    { name: "kk-test-host", version: "1.0.0" },
    { capabilities: { extensions: { [UI_EXTENSION]: { mimeTypes: [APP_MIME] } } } },
  );
  await connected.connect(transport);
  for (const tool of (await connected.listTools()).tools) tools.set(tool.name, tool);
  client = connected;
  return connected;
}

/** The policy a host puts on the view: what `_meta.ui.csp` lists, and nothing from anywhere else. */
function policy(csp: Csp): string {
  const list = (domains: string[] | undefined, fallback: string) =>
    domains && domains.length ? domains.join(" ") : fallback;
  return [
    "default-src 'none'",
    `script-src 'unsafe-inline' ${list(csp.resourceDomains, "")}`.trim(),
    `style-src 'unsafe-inline' ${list(csp.resourceDomains, "")}`.trim(),
    `img-src data: ${list(csp.resourceDomains, "")}`.trim(),
    `font-src data: ${list(csp.resourceDomains, "")}`.trim(),
    `connect-src ${list(csp.connectDomains, "'none'")}`,
    `frame-src ${list(csp.frameDomains, "'none'")}`,
    `base-uri ${list(csp.baseUriDomains, "'none'")}`,
  ].join("; ");
}

/** Ask the person (in this page) whether the view may run a call that changes something. */
function approve(name: string, args: unknown): Promise<boolean> {
  return new Promise((resolve) => {
    const box = document.createElement("div");
    box.setAttribute("role", "dialog");
    box.setAttribute("aria-label", "Approve a tool call");
    const text = document.createElement("p");
    text.textContent = `The view wants to run ${name} with ${JSON.stringify(args)}.`;
    const answer = (value: boolean) => () => {
      box.remove();
      resolve(value);
    };
    const allow = document.createElement("button");
    allow.textContent = "Allow";
    allow.onclick = answer(true);
    const deny = document.createElement("button");
    deny.textContent = "Deny";
    deny.onclick = answer(false);
    box.append(text, allow, deny);
    document.getElementById("approvals")!.append(box);
  });
}

/** Call `name` and render its view; resolves to the view's URI and its frame's title (unique in the page). */
async function show(name: string, args: Record<string, unknown>): Promise<{ uri: string; title: string }> {
  const mcp = await connect();
  const tool = tools.get(name);
  if (!tool) throw new Error(`the server lists no tool ${name}`);
  const uri = getToolUiResourceUri(tool);
  if (!uri) throw new Error(`${name} names no view`);
  const result = (await mcp.callTool({ name, arguments: args })) as CallToolResult;
  const read = await mcp.readResource({ uri });
  const content = read.contents[0] as { text?: string; mimeType?: string; _meta?: { ui?: { csp?: Csp } } };
  if (content.mimeType !== APP_MIME || typeof content.text !== "string") throw new Error(`${uri} is no MCP App`);
  const csp = content._meta?.ui?.csp;
  if (!csp) throw new Error(`${uri} declares no _meta.ui.csp`);
  const html = content.text.replace(
    /<head>/i,
    `<head><meta http-equiv="Content-Security-Policy" content="${policy(csp)}">`,
  );

  const figure = document.createElement("figure");
  const caption = document.createElement("figcaption");
  caption.textContent = `${name} → ${uri}`;
  const frame = document.createElement("iframe");
  frame.setAttribute("sandbox", SANDBOX);
  shown += 1;
  frame.title = `${name} view ${shown}`;
  frame.style.width = "100%";
  frame.style.border = "1px solid #b1b4b6";
  frame.style.height = "200px";
  figure.append(caption, frame);
  document.getElementById("views")!.append(figure);

  const bridge = new AppBridge(
    null,
    { name: "kk-test-host", version: "1.0.0" },
    { serverTools: {}, serverResources: {}, logging: {} },
    { hostContext: { theme: "light", displayMode: "inline", toolInfo: { tool } } },
  );
  bridge.oncalltool = async (params) => {
    const called = tools.get(params.name);
    if (!called?.annotations?.readOnlyHint && !(await approve(params.name, params.arguments ?? {}))) {
      throw new Error(`the person declined ${params.name}`);
    }
    return (await mcp.callTool(params)) as CallToolResult;
  };
  bridge.onreadresource = async (params) => mcp.readResource(params);
  bridge.onlistresources = async (params) => mcp.listResources(params);
  bridge.onloggingmessage = (params) => console.log("view log", params);
  bridge.onsizechange = ({ height }) => {
    if (height) frame.style.height = `${height}px`;
  };
  const initialized = new Promise<void>((resolve) => {
    bridge.oninitialized = () => resolve();
  });
  await bridge.connect(new PostMessageTransport(frame.contentWindow!, frame.contentWindow!));
  frame.srcdoc = html;
  await initialized;
  await bridge.sendToolInput({ arguments: args });
  await bridge.sendToolResult(result);
  return { uri, title: frame.title };
}

/** Remove every view shown so far (each ends with its frame). */
function clear(): void {
  document.getElementById("views")!.replaceChildren();
}

declare global {
  interface Window {
    kkHost: { show: typeof show; clear: typeof clear };
  }
}
window.kkHost = { show, clear };
document.body.dataset.ready = "true";

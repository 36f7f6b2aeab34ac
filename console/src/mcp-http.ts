/**
 * The console's transport: the official MCP TypeScript client over streamable HTTP to this server's /mcp.
 *
 * The person's bearer token goes in every request's Authorization header, so the server applies to
 * them exactly what it applies to any MCP client with that token: its scope, read_only, the key
 * policy, limits, the rate limit, and the audit trail under the token's name. The client declares
 * form elicitation: when a call would remove something the server asks, and the question is shown in
 * the console's Confirm/Cancel dialog.
 */
import "./zod-jitless";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport, StreamableHTTPError } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  type CallToolResult,
  ElicitRequestSchema,
  type ElicitResult,
  ResourceUpdatedNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";
import type { JsonSchemaValidator, jsonSchemaValidator } from "@modelcontextprotocol/sdk/validation/types.js";
import {
  type Confirm,
  type ConsoleTransport,
  type Progress,
  ToolError,
  type ToolInfo,
  type Unsubscribe,
} from "./transport";

export const MCP_PATH = "/mcp";
// A call waits while the person reads the confirmation dialog; the SDK's default of 60 s is too short.
const CALL_TIMEOUT_MS = 15 * 60 * 1000;

/** The server refused the token (or wants one): `message` is the server's own reason. */
export class LoginRefused extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "LoginRefused";
  }
}

/** The server checks its own results against their schemas; the console trusts them as they come. */
const acceptResults: jsonSchemaValidator = {
  getValidator<T>(): JsonSchemaValidator<T> {
    return (input) => ({ valid: true, data: input as T, errorMessage: undefined });
  },
};

export interface HttpOptions {
  token?: string;
  confirm: Confirm;
  /** The connection ended (server stopped, session expired): the console offers to reconnect. */
  onLost: (reason: string) => void;
}

export class HttpMcpTransport implements ConsoleTransport {
  private readonly followers = new Map<string, Set<() => void>>();
  private closed = false;
  private lost: (reason: string) => void = () => undefined;

  private constructor(
    private readonly client: Client,
    private readonly http: StreamableHTTPClientTransport,
    private readonly url: URL,
    private readonly token: string | undefined,
  ) {}

  static async connect(options: HttpOptions): Promise<HttpMcpTransport> {
    const url = new URL(MCP_PATH, window.location.href);
    const headers: Record<string, string> = options.token ? { Authorization: `Bearer ${options.token}` } : {};
    const http = new StreamableHTTPClientTransport(url, { requestInit: { headers } });
    const client = new Client(
      { name: "kk-etcd-mcp-console", title: "kk-etcd-mcp web console", version: "1" },
      { capabilities: { elicitation: { form: {} } }, jsonSchemaValidator: acceptResults },
    );
    const transport = new HttpMcpTransport(client, http, url, options.token);
    client.setRequestHandler(ElicitRequestSchema, async (request): Promise<ElicitResult> => {
      const params = request.params;
      if (params.mode === "url") return { action: "decline" };
      const confirmed = await options.confirm(params.message);
      return confirmed ? { action: "accept", content: acceptedContent(params.requestedSchema) } : { action: "decline" };
    });
    client.setNotificationHandler(ResourceUpdatedNotificationSchema, (notification) => {
      for (const onUpdate of transport.followers.get(notification.params.uri) ?? []) onUpdate();
    });
    client.onclose = () => {
      if (!transport.closed) options.onLost("the connection to the server ended");
    };
    client.onerror = (error) => {
      // The live stream gave up reconnecting, or the server no longer knows this session.
      if (transport.closed) return;
      if (error.message.startsWith("Maximum reconnection attempts")) options.onLost("the server stopped answering");
      else if (sessionGone(error)) options.onLost(SESSION_GONE);
    };
    transport.lost = options.onLost;
    try {
      await client.connect(http);
    } catch (error) {
      await client.close().catch(() => undefined);
      throw refusal(error) ?? error;
    }
    return transport;
  }

  async tools(): Promise<ToolInfo[]> {
    const listed = await this.client.listTools();
    return listed.tools.map((tool) => ({
      name: tool.name,
      title: tool.annotations?.title ?? tool.title,
      readOnly: tool.annotations?.readOnlyHint === true,
      destructive: tool.annotations?.destructiveHint === true,
    }));
  }

  async callTool<T>(name: string, args: Record<string, unknown>, onProgress?: (p: Progress) => void): Promise<T> {
    const result = (await this.watch(
      this.client.callTool({ name, arguments: args }, undefined, { timeout: CALL_TIMEOUT_MS, onprogress: onProgress }),
    )) as CallToolResult;
    if (result.isError) {
      const text = result.content
        .map((part) => (part.type === "text" ? part.text : ""))
        .join(" ")
        .trim();
      throw new ToolError(name, text || `${name} failed`);
    }
    return result.structuredContent as T;
  }

  async readResource(uri: string): Promise<string> {
    const read = await this.watch(this.client.readResource({ uri }));
    const first = read.contents[0];
    return first && "text" in first ? first.text : "";
  }

  async subscribe(uri: string, onUpdate: () => void): Promise<Unsubscribe> {
    let callbacks = this.followers.get(uri);
    if (!callbacks) {
      callbacks = new Set();
      this.followers.set(uri, callbacks);
      await this.client.subscribeResource({ uri });
    }
    callbacks.add(onUpdate);
    return async () => {
      callbacks.delete(onUpdate);
      if (callbacks.size === 0 && this.followers.get(uri) === callbacks) {
        this.followers.delete(uri);
        if (!this.closed) await this.client.unsubscribeResource({ uri }).catch(() => undefined);
      }
    };
  }

  /** A request's failure because the session is gone also says that the console is disconnected. */
  private async watch<R>(request: Promise<R>): Promise<R> {
    try {
      return await request;
    } catch (error) {
      if (!this.closed && sessionGone(error)) {
        this.lost(SESSION_GONE);
        throw new Error(`not connected: ${SESSION_GONE}; reconnect and try again`);
      }
      throw error;
    }
  }

  /** End the session on the server (sign out, reconnect). */
  async close(): Promise<void> {
    this.closed = true;
    await this.http.terminateSession().catch(() => undefined);
    await this.client.close().catch(() => undefined);
  }

  /** End the session as the page goes away: a request that outlives the page, so it cannot be awaited. */
  closeOnUnload(): void {
    const session = this.http.sessionId;
    this.closed = true;
    if (!session) return;
    const headers: Record<string, string> = { "mcp-session-id": session };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    const protocol = this.http.protocolVersion;
    if (protocol) headers["mcp-protocol-version"] = protocol;
    fetch(this.url, { method: "DELETE", headers, keepalive: true }).catch(() => undefined);
  }
}

const SESSION_GONE = "the server no longer knows this session (it restarted, or the session was idle too long)";

function sessionGone(error: unknown): boolean {
  return error instanceof StreamableHTTPError && error.code === 404;
}

/** The content of an accepted form: each field's default (a boolean without one: true). */
function acceptedContent(schema: { properties?: Record<string, unknown> } | undefined) {
  const content: Record<string, string | number | boolean | string[]> = {};
  for (const [name, field] of Object.entries(schema?.properties ?? {})) {
    const spec = field as { type?: string; default?: string | number | boolean | string[] };
    if (spec.default !== undefined) content[name] = spec.default;
    else if (spec.type === "boolean") content[name] = true;
  }
  return content;
}

/** The server's refusal of the token (403) or of the address (429), with its own message. */
function refusal(error: unknown): LoginRefused | undefined {
  if (!(error instanceof StreamableHTTPError) || (error.code !== 403 && error.code !== 401 && error.code !== 429)) {
    return undefined;
  }
  return new LoginRefused(error.code ?? 0, serverMessage(error.message));
}

/** The `message` of the server's JSON refusal inside the SDK's error text, else that text. */
export function serverMessage(text: string): string {
  const start = text.indexOf("{");
  if (start >= 0) {
    try {
      const body = JSON.parse(text.slice(start)) as { message?: string };
      if (body.message) return body.message;
    } catch {
      // not the server's JSON: fall through
    }
  }
  return text;
}

/**
 * `ConsoleTransport` over an MCP Apps host: every tool call and resource read goes through the host's
 * bridge (the ext-apps `App`), so the host decides, and may ask the person, before a call reaches the
 * server. A host offers no resource subscriptions to a view, so `subscribe` reads again on a timer.
 */
import type { App } from "@modelcontextprotocol/ext-apps";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { type ConsoleTransport, type Progress, type ToolInfo, ToolError, type Unsubscribe } from "../transport";

/** How often a followed resource is read again inside a host (the web console is told by the server). */
export const POLL_MS = 2000;

export class HostBridgeTransport implements ConsoleTransport {
  constructor(private readonly app: App) {}

  /** A view cannot list the server's tools through the host; the shell decides `can` by scope instead. */
  async tools(): Promise<ToolInfo[]> {
    return [];
  }

  async callTool<T>(name: string, args: Record<string, unknown>, onProgress?: (p: Progress) => void): Promise<T> {
    let result: CallToolResult;
    try {
      const options = onProgress ? { onprogress: onProgress } : undefined;
      result = (await this.app.callServerTool({ name, arguments: args }, options)) as CallToolResult;
    } catch (error) {
      // The host refused the call (the person declined it) or could not reach the server.
      throw new ToolError(name, `The host did not run ${name}: ${reason(error)}`);
    }
    if (result.isError) throw new ToolError(name, toolText(result) || `${name} failed`);
    return result.structuredContent as T;
  }

  async readResource(uri: string): Promise<string> {
    const result = await this.app.readServerResource({ uri });
    const content = result.contents[0];
    if (!content || !("text" in content)) throw new Error(`${uri} has no text`);
    return content.text;
  }

  async subscribe(_uri: string, onUpdate: () => void): Promise<Unsubscribe> {
    const timer = window.setInterval(onUpdate, POLL_MS);
    return async () => window.clearInterval(timer);
  }
}

/** The text a tool result carries (the server's sentence, for an error). */
export function toolText(result: CallToolResult): string {
  return result.content
    .map((part) => (part.type === "text" ? part.text : ""))
    .join(" ")
    .trim();
}

function reason(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.replace(/^MCP error -?\d+: /, "");
}

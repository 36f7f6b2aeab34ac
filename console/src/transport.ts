/**
 * What the views need from the server, and nothing of how it is reached.
 *
 * The web console reaches the server over streamable HTTP (`mcp-http.ts`); an MCP App inside an
 * assistant reaches it through the host's bridge. Both call the same MCP tools and read the same
 * resources, so the views are written against this interface only: no view imports a transport.
 */

/** A tool this client may call (the server lists only the tools of the client's scope). */
export interface ToolInfo {
  name: string;
  title?: string;
  readOnly: boolean;
  destructive: boolean;
}

/** A tool's progress notification, for long calls (snapshots, imports). */
export interface Progress {
  progress: number;
  total?: number;
  message?: string;
}

/** A tool answered with an error: `message` is the server's own sentence, meant to be shown as it is. */
export class ToolError extends Error {
  constructor(
    readonly tool: string,
    message: string,
  ) {
    super(message);
    this.name = "ToolError";
  }
}

export type Unsubscribe = () => Promise<void>;

export interface ConsoleTransport {
  /** The tools this client may call. */
  tools(): Promise<ToolInfo[]>;
  /** Call a tool; resolves to its structured result, rejects with ToolError carrying the server's message.
   * A call that removes something may first make the server ask the person (see `Confirm`). */
  callTool<T>(name: string, args: Record<string, unknown>, onProgress?: (p: Progress) => void): Promise<T>;
  /** The text of a resource (kk://services, kk://client, ...). */
  readResource(uri: string): Promise<string>;
  /** Follow a resource: `onUpdate` runs whenever the server says it may have changed (read it again). */
  subscribe(uri: string, onUpdate: () => void): Promise<Unsubscribe>;
}

/** Asks the person a yes/no question (the server's confirmation of a change); true when they confirm. */
export type Confirm = (question: string) => Promise<boolean>;

/** Who the server takes this client for: the resource kk://client. */
export interface Identity {
  name: string;
  scope: "read" | "write" | "admin";
  read_only: boolean;
}

export const CLIENT_URI = "kk://client";

export async function identity(transport: ConsoleTransport): Promise<Identity> {
  return JSON.parse(await transport.readResource(CLIENT_URI)) as Identity;
}

/**
 * The shell of an MCP App view: connect to the host (ext-apps `App`), learn who this client is
 * (kk://client, read through the host), then mount one of the console's views with a `ViewContext`
 * whose transport is the host's bridge. A view waits for what it needs from the host: nothing, the
 * tool's arguments, or the tool's result.
 */
import "../zod-jitless";
import { App } from "@modelcontextprotocol/ext-apps";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { confirmDialog } from "../dialog";
import { fill, h } from "../dom";
import { type Identity, identity } from "../transport";
import { type ViewContext, errorText, notice } from "../view";
import { HostBridgeTransport } from "./bridge";

export interface ToolCall {
  arguments: Record<string, unknown>;
  result?: CallToolResult;
}

export interface AppView {
  title: string;
  /** What the view needs before it can show anything. */
  waitFor: "nothing" | "input" | "result";
  mount(root: HTMLElement, ctx: ViewContext, call: ToolCall): () => void;
}

const RANK = { read: 0, write: 1, admin: 2 } as const;
/** The scope each control of the views needs (the server refuses a call beyond the scope anyway). Tools
 * not listed here show no control inside an assistant (registering, importing: the web console has them). */
const CONTROLS: Record<string, keyof typeof RANK> = {
  kv_get: "read",
  kv_history: "read",
  service_check: "read",
  kv_put: "write",
  kv_rollback: "write",
  service_deregister: "write",
  cluster_snapshot: "admin",
};

export function may(who: Identity, tool: string): boolean {
  const needed = CONTROLS[tool];
  if (needed === undefined) return false;
  if (needed !== "read" && who.read_only) return false;
  return RANK[who.scope] >= RANK[needed];
}

export function startApp(view: AppView): void {
  const root = document.getElementById("main") as HTMLElement;
  const announcer = h("div", { class: "visually-hidden", role: "status", "aria-live": "polite" });
  document.body.append(announcer);
  const app = new App({ name: "kk-etcd-mcp", version: "1" }, {}, { autoResize: true });
  let args: Record<string, unknown> | null = null;
  let result: CallToolResult | undefined;
  let ctx: ViewContext | null = null;
  let stop: (() => void) | null = null;
  let declines = 0;

  const show = (again: boolean) => {
    if (ctx === null) return;
    if (view.waitFor === "input" && args === null) return;
    if (view.waitFor === "result" && result === undefined) return;
    if (stop !== null && !again) return;
    stop?.();
    stop = view.mount(root, ctx, { arguments: args ?? {}, result });
  };
  app.ontoolinput = (params) => {
    args = params.arguments ?? {};
    show(false);
  };
  app.ontoolresult = (params) => {
    result = params as CallToolResult;
    show(view.waitFor === "result");
  };
  app.onteardown = async () => {
    stop?.();
    stop = null;
    return {};
  };

  void (async () => {
    try {
      await app.connect();
      const transport = new HostBridgeTransport(app);
      const who = await identity(transport);
      ctx = {
        transport,
        identity: who,
        can: (tool) => may(who, tool),
        hostApproves: true,
        confirm: async (question) => {
          const confirmed = await confirmDialog(question);
          if (!confirmed) declines += 1;
          return confirmed;
        },
        declines: () => declines,
        announce: (text) => {
          announcer.textContent = text;
        },
        params: new URLSearchParams(),
        navigate: () => undefined, // one view per document: nowhere to go
      };
      show(false);
    } catch (error) {
      fill(root, h("h1", null, view.title), notice("error", `Could not reach the server: ${errorText(error)}`));
    }
  })();
}

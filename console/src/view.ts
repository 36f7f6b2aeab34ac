/**
 * What every view gets (`ViewContext`) and the small pieces views share: notices, status badges,
 * times, summary lists, and the dry-run-then-confirm sequence for changes the server would not ask about.
 */
import { fill, h, hidden } from "./dom";
import { type Confirm, type ConsoleTransport, type Identity, ToolError } from "./transport";

export interface ViewContext {
  transport: ConsoleTransport;
  identity: Identity;
  /** True when this client may call the tool (the server lists it): write controls show only then. */
  can(tool: string): boolean;
  confirm: Confirm;
  /** The host asks the person before it runs a change for the view (an MCP App): the view asks nothing itself. */
  hostApproves?: boolean;
  /** How many confirmations the person has cancelled so far (a refused call after one is no error). */
  declines(): number;
  /** Say something to screen readers (and show it in the status line). */
  announce(text: string): void;
  /** The view's parameters from the address (#/config?key=app/db). */
  params: URLSearchParams;
  navigate(hash: string): void;
}

export interface View {
  id: string;
  title: string;
  /** The tool the view cannot work without (the view is offered only when the client may call it). */
  needs: string;
  /** Render into `root`; returns the function that stops it (subscriptions, timers). */
  mount(root: HTMLElement, ctx: ViewContext): () => void;
}

export type NoticeKind = "info" | "success" | "error" | "warning";

/** A message box; errors are alerts (read at once), the rest polite status. */
export function notice(kind: NoticeKind, ...content: (string | Node | null)[]): HTMLDivElement {
  const label = { info: "Information", success: "Done", error: "Error", warning: "Warning" }[kind];
  return h(
    "div",
    { class: `notice notice--${kind}`, role: kind === "error" ? "alert" : "status" },
    h("p", { class: "notice__label" }, label),
    h("div", { class: "notice__body" }, ...content),
  );
}

/** A region that holds at most one notice and keeps its place (no layout jump when one appears). */
export function noticeArea(): { element: HTMLDivElement; show: (n: HTMLElement | null) => void } {
  const element = h("div", { class: "notice-area" });
  return { element, show: (n) => fill(element, n) };
}

/** The server's sentence for an error (a tool's refusal, a lost connection, ...). */
export function errorText(error: unknown): string {
  if (error instanceof ToolError) return error.message;
  if (error instanceof Error) return error.message;
  return String(error);
}

export type Health = "passing" | "warning" | "critical";

/** A status in words and colour (and a shape, for those who do not see the colour). `tone` picks the
 * colour (passing, warning, critical, neutral) when the words are not a health status themselves. */
export function statusBadge(status: string, tone: string = status): HTMLSpanElement {
  const badge = h("span", { class: `status status--${tone}` });
  setStatus(badge, status, tone);
  return badge;
}

export function setStatus(badge: HTMLElement, status: string, tone: string = status): void {
  if (badge.dataset.status === status) return;
  badge.dataset.status = status;
  badge.className = `status status--${tone}`;
  fill(badge, h("span", { class: "status__icon", "aria-hidden": "true" }), status);
}

/** A time as local date and time, with the exact instant in the datetime attribute. */
export function timeText(iso: string | null | undefined): string {
  if (!iso) return "—";
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return iso;
  const pad = (n: number) => String(n).padStart(2, "0");
  return (
    `${when.getFullYear()}-${pad(when.getMonth() + 1)}-${pad(when.getDate())} ` +
    `${pad(when.getHours())}:${pad(when.getMinutes())}:${pad(when.getSeconds())}`
  );
}

export function timeElement(iso: string | null | undefined): HTMLTimeElement {
  return h("time", iso ? { datetime: iso } : null, timeText(iso));
}

/** A list of name/value rows (GOV.UK's summary list): a <dl>. */
export function summaryList(rows: [string, string | Node][]): HTMLDListElement {
  return h(
    "dl",
    { class: "summary-list" },
    rows.map(([name, value]) => h("div", { class: "summary-list__row" }, h("dt", null, name), h("dd", null, value))),
  );
}

export function bytes(size: number): string {
  if (size < 1024) return `${size} bytes`;
  let value = size / 1024;
  for (const unit of ["KiB", "MiB"]) {
    if (value < 1024) return `${value.toFixed(1)} ${unit}`;
    value /= 1024;
  }
  return `${value.toFixed(1)} GiB`;
}

interface Change {
  dry_run: boolean;
  change: string;
  removes: string[];
}

/**
 * A change that deserves a confirmation even when it removes nothing (a rollback): the dry run's own
 * words are the question. When the change removes something the server asks itself (elicitation), so
 * the console does not ask twice; inside a host that approves each change (`hostApproves`), neither
 * does the view. Resolves to the result, or null when the person cancelled.
 */
export async function confirmedCall<T>(
  ctx: ViewContext,
  tool: string,
  args: Record<string, unknown>,
): Promise<T | null> {
  if (ctx.hostApproves) return ctx.transport.callTool<T>(tool, args);
  const plan = await ctx.transport.callTool<Change>(tool, { ...args, dry_run: true });
  if (plan.removes.length === 0) {
    const question = `Confirm ${tool}: ${plan.change}. Nothing changes unless you confirm.`;
    if (!(await ctx.confirm(question))) return null;
  }
  return ctx.transport.callTool<T>(tool, args);
}

/**
 * Run a change and report it in `area`: the success text, the server's error, or, when the person
 * cancelled a confirmation on the way, that nothing was changed. Resolves to the result or null.
 */
export async function runChange<T>(
  ctx: ViewContext,
  area: { show: (n: HTMLElement | null) => void },
  work: () => Promise<T | null>,
  success: (result: T) => string | Node,
): Promise<T | null> {
  const declined = ctx.declines();
  area.show(null);
  try {
    const result = await work();
    if (result === null) {
      area.show(notice("info", "Cancelled: nothing was changed."));
      return null;
    }
    area.show(notice("success", success(result)));
    return result;
  } catch (error) {
    if (ctx.declines() > declined) area.show(notice("info", "Cancelled: nothing was changed."));
    else area.show(notice("error", errorText(error)));
    return null;
  }
}

/** A visually hidden heading-level label for a control group. */
export function legend(text: string): HTMLLegendElement {
  return h("legend", { class: "fieldset__legend" }, text);
}

export { hidden };

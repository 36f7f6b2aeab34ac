/**
 * Audit: the newest entries of the audit trail the server keeps in etcd (audit_to_etcd), with the
 * check of its hash chain: intact, or which entries were edited, removed or forged behind its back.
 */
import { button, fill, h, uid } from "../dom";
import { type View, errorText, notice, noticeArea, statusBadge, timeElement } from "../view";

interface Entry {
  time: string;
  tool: string;
  client: string;
  outcome: "ok" | "dry_run" | "refused" | "error";
  error: string | null;
  affected: string[];
  affected_count: number;
  revision: number | null;
  seq: number | null;
}

interface Chain {
  intact: boolean;
  entries: number;
  first_seq: number | null;
  last_seq: number | null;
  breaks: { problem: string; seq: number | null; key: string; detail: string }[];
  breaks_count: number;
}

interface AuditLog {
  enabled: boolean;
  entries: Entry[];
  chain: Chain | null;
  note: string | null;
}

const OUTCOME_STATUS: Record<Entry["outcome"], string> = {
  ok: "passing",
  dry_run: "neutral",
  refused: "warning",
  error: "critical",
};

export const auditView: View = {
  id: "audit",
  title: "Audit",
  needs: "audit_log",
  mount(root, ctx) {
    const messages = noticeArea();
    const body = h("div", null, h("p", { class: "view-summary" }, "Loading the audit trail…"));
    const tool = h("input", { id: uid("audit-tool"), class: "input", autocomplete: "off", spellcheck: "false" });
    const reload = async () => {
      messages.show(null);
      try {
        const args: Record<string, unknown> = { limit: 100 };
        if (tool.value.trim()) args.tool = tool.value.trim();
        fill(body, render(await ctx.transport.callTool<AuditLog>("audit_log", args)));
      } catch (error) {
        messages.show(notice("error", errorText(error)));
      }
    };
    fill(
      root,
      h("h1", null, "Audit"),
      h(
        "p",
        { class: "view-summary" },
        "Every call that changes something, newest first: who made it, what it touched, how it ended.",
      ),
      messages.element,
      h(
        "form",
        {
          class: "inline-form",
          role: "search",
          "aria-label": "Filter the audit trail",
          on: { submit: (e) => (e.preventDefault(), void reload()) },
        },
        h("div", { class: "field field--inline" }, h("label", { for: tool.id }, "Only calls of tool"), tool),
        h("button", { type: "submit", class: "button button--secondary" }, "Show"),
        button("Refresh", () => void reload(), "secondary"),
      ),
      body,
    );
    void reload();
    return () => undefined;
  },
};

function render(log: AuditLog): HTMLElement {
  if (!log.enabled) return notice("info", log.note ?? "This server does not keep its audit trail in etcd.");
  return h("div", null, chainSummary(log.chain), entriesTable(log.entries));
}

function chainSummary(chain: Chain | null): HTMLElement | null {
  if (!chain) return null;
  const range = chain.first_seq === null ? "" : ` (entries ${chain.first_seq} to ${chain.last_seq})`;
  if (chain.intact) {
    return h(
      "p",
      { class: "chain" },
      statusBadge("chain intact", "passing"),
      ` ${chain.entries} entries checked${range}: each links to the one before.`,
    );
  }
  return h(
    "div",
    { class: "chain" },
    h(
      "p",
      null,
      statusBadge("chain broken", "critical"),
      ` ${chain.breaks_count} problem${chain.breaks_count === 1 ? "" : "s"} in ${chain.entries} entries${range}:`,
    ),
    h(
      "ul",
      null,
      chain.breaks.map((b) => h("li", null, `${b.problem}${b.seq === null ? "" : ` (entry ${b.seq})`}: ${b.detail}`)),
    ),
  );
}

function entriesTable(entries: Entry[]): HTMLElement {
  if (!entries.length) return h("p", null, "No entries yet.");
  return h(
    "div",
    { class: "table-scroll" },
    h(
      "table",
      { class: "table audit-table" },
      h("caption", null, `The newest ${entries.length} entries`),
      h(
        "thead",
        null,
        h(
          "tr",
          null,
          ["Time", "Tool", "Client", "Outcome", "Affected", "Revision", "Entry"].map((t) =>
            h("th", { scope: "col" }, t),
          ),
        ),
      ),
      h(
        "tbody",
        null,
        entries.map((e) =>
          h(
            "tr",
            null,
            h("td", null, timeElement(e.time)),
            h("th", { scope: "row", class: "mono" }, e.tool),
            h("td", null, e.client),
            h(
              "td",
              null,
              statusBadge(e.outcome, OUTCOME_STATUS[e.outcome]),
              e.error ? h("p", { class: "hint" }, e.error) : null,
            ),
            h(
              "td",
              { class: "mono" },
              e.affected.join(", ") +
                (e.affected_count > e.affected.length ? ` and ${e.affected_count - e.affected.length} more` : ""),
            ),
            h("td", { class: "numeric" }, e.revision === null ? "" : String(e.revision)),
            h("td", { class: "numeric" }, e.seq === null ? "" : String(e.seq)),
          ),
        ),
      ),
    ),
  );
}

/**
 * A key's history: its versions newest first, a diff between any two, and Rollback (with the
 * confirmation). Shown under the key in the web console, and alone as the kv_history view of an MCP App.
 */
import { renderDiff } from "../diff";
import { button, fill, h, hidden, uid } from "../dom";
import { pretty } from "../format";
import { type ViewContext, confirmedCall, errorText, notice, runChange } from "../view";

export interface KvVersion {
  mod_revision: number;
  version: number;
  value: string;
  encoding: "utf-8" | "base64";
}

export interface KvHistoryResult {
  versions: KvVersion[];
  complete: boolean;
  note: string | null;
}

/** Fill `section` with the history of `key`; `afterRollback` runs once a rollback landed. */
export async function showHistory(
  section: HTMLElement,
  ctx: ViewContext,
  key: string,
  messages: { show: (n: HTMLElement | null) => void },
  afterRollback: () => Promise<void>,
): Promise<void> {
  let history: KvHistoryResult;
  try {
    history = await ctx.transport.callTool<KvHistoryResult>("kv_history", { key, limit: 50 });
  } catch (error) {
    fill(section, h("h2", { id: "history-heading" }, "History"), notice("error", errorText(error)));
    return;
  }
  const versions = history.versions;
  const diffArea = h("div", { class: "diff-area" });
  let from = versions.length > 1 ? 1 : 0;
  let to = 0;
  const showDiff = () => {
    const older = versions[from];
    const newer = versions[to];
    fill(
      diffArea,
      renderDiff({
        before: readable(older),
        after: readable(newer),
        beforeLabel: `Revision ${older.mod_revision}`,
        afterLabel: `Revision ${newer.mod_revision}`,
        caption: `Changes from revision ${older.mod_revision} to revision ${newer.mod_revision}`,
      }),
    );
  };
  const radio = (group: string, label: string, checked: boolean, pick: () => void) => {
    const id = uid(group);
    return h(
      "div",
      { class: "radio" },
      h("input", { type: "radio", id, name: group, checked, on: { change: pick } }),
      h("label", { for: id }, hidden(label)),
    );
  };
  const rollback = async (revision: number) => {
    const done = await runChange(
      ctx,
      messages,
      () => confirmedCall<{ change: string; new_revision: number }>(ctx, "kv_rollback", { key, to_revision: revision }),
      (result) => `Rolled back: ${result.change} (now revision ${result.new_revision}).`,
    );
    if (done) await afterRollback();
  };
  const fromGroup = uid("from");
  const toGroup = uid("to");
  const canRollback = ctx.can("kv_rollback");
  const rows = versions.map((version, index) =>
    h(
      "tr",
      null,
      h("th", { scope: "row", class: "numeric" }, String(version.mod_revision)),
      h("td", { class: "numeric" }, String(version.version)),
      h("td", null, h("code", { class: "preview" }, preview(version))),
      h(
        "td",
        null,
        radio(fromGroup, `Compare from revision ${version.mod_revision}`, index === from, () => {
          from = index;
          showDiff();
        }),
      ),
      h(
        "td",
        null,
        radio(toGroup, `Compare to revision ${version.mod_revision}`, index === to, () => {
          to = index;
          showDiff();
        }),
      ),
      canRollback
        ? h(
            "td",
            null,
            index === 0 || version.encoding === "base64"
              ? h("span", { class: "hint" }, index === 0 ? "current" : "")
              : button("Roll back", () => void rollback(version.mod_revision), "secondary", {
                  "aria-label": `Roll back to revision ${version.mod_revision}`,
                }),
          )
        : null,
    ),
  );
  fill(
    section,
    h("h2", { id: "history-heading" }, "History"),
    history.note ? h("p", { class: "hint" }, history.note) : null,
    h(
      "div",
      { class: "table-scroll" },
      h(
        "table",
        { class: "table history-table" },
        h("caption", null, `Versions of ${key}, newest first`),
        h(
          "thead",
          null,
          h(
            "tr",
            null,
            ["Revision", "Version", "Value", "From", "To"].map((t) => h("th", { scope: "col" }, t)),
            canRollback ? h("th", { scope: "col" }, "Rollback") : null,
          ),
        ),
        h("tbody", null, rows),
      ),
    ),
    versions.length ? diffArea : h("p", null, "No earlier versions."),
  );
  if (versions.length) showDiff();
}

/** A version as the diff compares it: JSON laid out one field a line, so a change shows as the lines it touched. */
export function readable(version: { value: string; encoding: "utf-8" | "base64" }): string {
  if (version.encoding === "base64") return "(binary)";
  const start = version.value.trimStart()[0];
  return start === "{" || start === "[" ? pretty(version.value, "json") : version.value;
}

function preview(version: KvVersion): string {
  if (version.encoding === "base64") return "(binary)";
  const line = version.value.replace(/\s+/g, " ").trim();
  return line.length > 80 ? `${line.slice(0, 79)}…` : line;
}

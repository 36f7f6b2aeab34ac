/**
 * One key: its value laid out for reading, an editor that checks json/yaml as you type, Save with
 * expected_revision (a concurrent change shows as a conflict: their value beside yours, then reload
 * or overwrite knowingly), and the key's history with a diff between any two versions and Rollback.
 */
import { renderDiff } from "../diff";
import { button, fill, h, hidden, uid } from "../dom";
import { type ValueFormat, describeProblem, pretty, validate } from "../format";
import { folderOf } from "../keys";
import { ToolError } from "../transport";
import { type ViewContext, confirmedCall, errorText, notice, noticeArea, runChange, summaryList } from "../view";
import { breadcrumbs, configHash } from "./config";

interface KvEntry {
  key: string;
  value: string;
  format: ValueFormat;
  encoding: "utf-8" | "base64";
  create_revision: number;
  mod_revision: number;
  version: number;
  lease: number;
  note: string | null;
}

interface KvVersion {
  mod_revision: number;
  version: number;
  value: string;
  encoding: "utf-8" | "base64";
}

interface KvHistoryResult {
  versions: KvVersion[];
  complete: boolean;
  note: string | null;
}

interface KvPutResult {
  revision: number;
  change: string;
}

export function mountKey(root: HTMLElement, ctx: ViewContext, key: string, isNew: boolean): () => void {
  const messages = noticeArea();
  const details = h("div", { class: "key-details" });
  const valueSection = h("section", { class: "section", "aria-labelledby": "value-heading" });
  const editorSection = h("section", { class: "section", "aria-labelledby": "editor-heading", hidden: true });
  const historySection = h("section", { class: "section", "aria-labelledby": "history-heading" });
  const name = key.slice(folderOf(key).length) || key;
  let entry: KvEntry | null = null;

  fill(
    root,
    breadcrumbs(key, name),
    h("h1", { class: "mono key-title" }, key),
    messages.element,
    details,
    valueSection,
    editorSection,
    historySection,
  );

  const load = async (): Promise<void> => {
    try {
      entry = await ctx.transport.callTool<KvEntry>("kv_get", { key });
    } catch (error) {
      entry = null;
      fill(details);
      fill(valueSection);
      if (isNew) openEditor("", "text", 0);
      else messages.show(notice("error", errorText(error)));
      return;
    }
    showEntry(entry);
    void loadHistory();
  };

  const showEntry = (current: KvEntry) => {
    fill(
      details,
      summaryList([
        ["Format", current.encoding === "base64" ? "binary" : current.format],
        ["Modified at revision", String(current.mod_revision)],
        ["Created at revision", String(current.create_revision)],
        ["Version", String(current.version)],
        ["Lease", current.lease ? String(current.lease) : "none"],
      ]),
    );
    const binary = current.encoding === "base64";
    fill(
      valueSection,
      h("h2", { id: "value-heading" }, "Current value"),
      current.note ? h("p", { class: "hint" }, current.note) : null,
      binary
        ? h("p", null, `A binary value of ${atob(current.value).length} bytes; it is not shown or edited here.`)
        : h(
            "pre",
            { class: "value", tabindex: "0", "aria-label": `Value of ${key}` },
            pretty(current.value, current.format),
          ),
      h(
        "div",
        { class: "button-group" },
        !binary && ctx.can("kv_put")
          ? button("Edit", () => openEditor(current.value, current.format, current.mod_revision))
          : null,
        ctx.can("kv_delete")
          ? button("Delete", () => void remove(current), "warning", { "aria-label": `Delete ${key}` })
          : null,
      ),
    );
  };

  const remove = async (current: KvEntry) => {
    const done = await runChange(
      ctx,
      messages,
      () => ctx.transport.callTool<{ change: string }>("kv_delete", { key, expected_revision: current.mod_revision }),
      (result) => `Done: ${result.change}.`,
    );
    if (done) ctx.navigate(configHash({ prefix: folderOf(key) }));
  };

  // The editor -----------------------------------------------------------------------------------------

  const openEditor = (text: string, format: ValueFormat, expected: number) => {
    const textareaId = uid("editor");
    const errorId = `${textareaId}-error`;
    const formatSelect = h(
      "select",
      { id: uid("format"), class: "select" },
      (["text", "json", "yaml"] as ValueFormat[]).map((f) => h("option", { value: f }, f)),
    );
    formatSelect.value = format;
    const textarea = h("textarea", {
      id: textareaId,
      class: "textarea editor",
      rows: 16,
      spellcheck: "false",
      autocomplete: "off",
      "aria-describedby": errorId,
      value: text,
    });
    const problemLine = h("p", { id: errorId, class: "field-message", role: "status", "aria-live": "polite" });
    const conflict = h("div");
    const check = (): boolean => {
      const problem = validate(textarea.value, formatSelect.value as ValueFormat);
      if (problem) {
        problemLine.textContent = describeProblem(problem);
        problemLine.className = "field-message field-message--error";
        textarea.setAttribute("aria-invalid", "true");
        return false;
      }
      problemLine.textContent = formatSelect.value === "text" ? "" : `Valid ${formatSelect.value}.`;
      problemLine.className = "field-message field-message--ok";
      textarea.removeAttribute("aria-invalid");
      return true;
    };
    textarea.addEventListener("input", check);
    formatSelect.addEventListener("change", check);

    const save = async (expectedRevision: number) => {
      fill(conflict);
      if (!check()) {
        messages.show(notice("error", `Not saved: ${problemLine.textContent}`));
        textarea.focus();
        return;
      }
      const mine = textarea.value;
      messages.show(null);
      try {
        const result = await ctx.transport.callTool<KvPutResult>("kv_put", {
          key,
          value: mine,
          format: formatSelect.value,
          expected_revision: expectedRevision,
        });
        messages.show(notice("success", `Saved ${key} at revision ${result.revision}.`));
        isNew = false;
        closeEditor();
        await load();
      } catch (error) {
        let theirs: { value: string; mod_revision: number } | null = null;
        try {
          theirs = await current();
        } catch {
          // the key could not be read again: report the save's own error
        }
        if (theirs && theirs.mod_revision !== expectedRevision) showConflict(expectedRevision, theirs, mine);
        else messages.show(notice("error", `Not saved: ${errorText(error)}`));
      }
    };

    const showConflict = (expectedRevision: number, theirs: { value: string; mod_revision: number }, mine: string) => {
      messages.show(null);
      const was = expectedRevision === 0 ? "did not exist" : `was at revision ${expectedRevision}`;
      const now = theirs.mod_revision === 0 ? "has been deleted" : `is now at revision ${theirs.mod_revision}`;
      fill(
        conflict,
        h(
          "div",
          { class: "conflict", role: "alert" },
          h("h3", null, "Someone else changed this key"),
          h(
            "p",
            null,
            `It ${was} when you opened it and ${now}. Nothing was saved. Compare their value with yours, ` +
              "then reload theirs or overwrite it with yours.",
          ),
          renderDiff({
            before: theirs.value,
            after: mine,
            beforeLabel: "Theirs",
            afterLabel: "Yours",
            caption: "Their value compared with yours",
          }),
          h(
            "div",
            { class: "button-group" },
            button("Overwrite with mine", () => void save(theirs.mod_revision), "warning"),
            button(
              "Discard mine and reload",
              () => {
                closeEditor();
                void load();
              },
              "secondary",
            ),
          ),
        ),
      );
    };

    fill(
      editorSection,
      h("h2", { id: "editor-heading" }, isNew ? "New value" : "Edit value"),
      h(
        "form",
        { class: "form", on: { submit: (e) => (e.preventDefault(), void save(expected)) } },
        h("div", { class: "field field--inline" }, h("label", { for: formatSelect.id }, "Format"), formatSelect),
        h("div", { class: "field" }, h("label", { for: textarea.id }, "Value to save"), problemLine, textarea),
        h(
          "div",
          { class: "button-group" },
          h("button", { type: "submit", class: "button button--primary" }, "Save"),
          button("Cancel", () => closeEditor(), "secondary"),
        ),
      ),
      conflict,
    );
    editorSection.hidden = false;
    check();
    textarea.focus();
  };

  const closeEditor = () => {
    editorSection.hidden = true;
    fill(editorSection);
  };

  /** The key as it is now ("" at revision 0 when it is gone). */
  const current = async (): Promise<{ value: string; mod_revision: number }> => {
    try {
      const now = await ctx.transport.callTool<KvEntry>("kv_get", { key });
      return { value: now.value, mod_revision: now.mod_revision };
    } catch (error) {
      if (error instanceof ToolError) return { value: "", mod_revision: 0 };
      throw error;
    }
  };

  // History --------------------------------------------------------------------------------------------

  const loadHistory = async () => {
    let history: KvHistoryResult;
    try {
      history = await ctx.transport.callTool<KvHistoryResult>("kv_history", { key, limit: 50 });
    } catch (error) {
      fill(historySection, h("h2", { id: "history-heading" }, "History"), notice("error", errorText(error)));
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
      historySection,
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
  };

  const rollback = async (revision: number) => {
    const done = await runChange(
      ctx,
      messages,
      () => confirmedCall<{ change: string; new_revision: number }>(ctx, "kv_rollback", { key, to_revision: revision }),
      (result) => `Rolled back: ${result.change} (now revision ${result.new_revision}).`,
    );
    if (done) {
      closeEditor();
      await load();
    }
  };

  void load();
  return () => undefined;
}

/** A version as the diff compares it: JSON laid out one field a line, so a change shows as the lines it touched. */
function readable(version: KvVersion): string {
  if (version.encoding === "base64") return "(binary)";
  const start = version.value.trimStart()[0];
  return start === "{" || start === "[" ? pretty(version.value, "json") : version.value;
}

function preview(version: KvVersion): string {
  if (version.encoding === "base64") return "(binary)";
  const line = version.value.replace(/\s+/g, " ").trim();
  return line.length > 80 ? `${line.slice(0, 79)}…` : line;
}

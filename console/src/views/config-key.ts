/**
 * One key: its value laid out for reading, an editor that checks json/yaml as you type, Save with
 * expected_revision (a concurrent change shows as a conflict: their value beside yours, then reload
 * or overwrite knowingly), and the key's history (./history.ts).
 */
import { renderDiff } from "../diff";
import { button, fill, h, uid } from "../dom";
import { type ValueFormat, describeProblem, pretty, validate } from "../format";
import { folderOf } from "../keys";
import { ToolError } from "../transport";
import { type ViewContext, errorText, notice, noticeArea, runChange, summaryList } from "../view";
import { breadcrumbs, configHash } from "./config";
import { showHistory } from "./history";

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

  const loadHistory = () =>
    showHistory(historySection, ctx, key, messages, async () => {
      closeEditor();
      await load();
    });

  void load();
  return () => undefined;
}

/**
 * Export a prefix to a file (kv_export), and import a file: first its dry-run plan (what it creates,
 * updates, deletes), then, only on request, that very plan (kv_import with its plan_fingerprint: refused
 * when anything changed since the plan was shown). A plan that deletes keys is confirmed by the server.
 */
import { button, download, fill, h, uid } from "../dom";
import { type ViewContext, errorText, notice, noticeArea, runChange } from "../view";

interface ImportResult {
  mode: "merge" | "replace";
  change: string;
  removes: string[];
  plan: { create: string[]; update: string[]; delete: string[]; unchanged: string[] };
  plan_fingerprint: string;
  applied: number;
  revision: number | null;
}

const LISTED = 100;

export function transferPanel(ctx: ViewContext, prefix: string): HTMLElement {
  const messages = noticeArea();
  return h(
    "details",
    { class: "panel" },
    h("summary", null, "Export or import"),
    messages.element,
    exportForm(ctx, prefix, messages),
    ctx.can("kv_import") ? importForm(ctx, messages) : null,
  );
}

function exportForm(ctx: ViewContext, prefix: string, messages: ReturnType<typeof noticeArea>): HTMLElement {
  const input = h("input", {
    id: uid("export"),
    class: "input",
    value: prefix,
    autocomplete: "off",
    spellcheck: "false",
  });
  const submit = async (event: Event) => {
    event.preventDefault();
    messages.show(null);
    try {
      const document = await ctx.transport.callTool<{ items: unknown[]; revision: number }>("kv_export", {
        prefix: input.value,
      });
      const name = `kk-etcd-export-${input.value.replace(/[^A-Za-z0-9._-]+/g, "_") || "all"}-r${document.revision}.json`;
      download(name, `${JSON.stringify(document, null, 2)}\n`);
      messages.show(
        notice("success", `Exported ${document.items.length} keys at revision ${document.revision} to ${name}.`),
      );
    } catch (error) {
      messages.show(notice("error", errorText(error)));
    }
  };
  return h(
    "form",
    { class: "form", on: { submit: (e) => void submit(e) } },
    h("h3", null, "Export"),
    h("div", { class: "field" }, h("label", { for: input.id }, "Prefix to export"), input),
    h("button", { type: "submit", class: "button button--secondary" }, "Export to a file"),
  );
}

function importForm(ctx: ViewContext, messages: ReturnType<typeof noticeArea>): HTMLElement {
  const file = h("input", { type: "file", id: uid("import"), class: "file", accept: ".json,application/json" });
  const mode = h(
    "select",
    { id: uid("mode"), class: "select" },
    h("option", { value: "merge" }, "merge: create and update keys"),
    h("option", { value: "replace" }, "replace: also delete keys under the prefix that the file lacks"),
  );
  const planArea = h("div", { class: "plan" });
  let document: unknown = null;

  const plan = async (event: Event) => {
    event.preventDefault();
    messages.show(null);
    fill(planArea);
    const chosen = file.files?.[0];
    if (!chosen) {
      messages.show(notice("error", "Choose a file exported by this console (or by kv_export) first."));
      return;
    }
    try {
      document = JSON.parse(await chosen.text());
    } catch (error) {
      messages.show(notice("error", `${chosen.name} is not JSON: ${errorText(error)}`));
      return;
    }
    try {
      const planned = await ctx.transport.callTool<ImportResult>("kv_import", {
        document,
        mode: mode.value,
        dry_run: true,
      });
      showPlan(planned);
    } catch (error) {
      messages.show(notice("error", errorText(error)));
    }
  };

  const showPlan = (planned: ImportResult) => {
    const group = (title: string, keys: string[]) =>
      keys.length
        ? h(
            "div",
            null,
            h("h5", null, `${title}: ${keys.length}`),
            h(
              "ul",
              { class: "key-list" },
              keys.slice(0, LISTED).map((k) => h("li", { class: "mono" }, k)),
            ),
            keys.length > LISTED ? h("p", { class: "hint" }, `and ${keys.length - LISTED} more`) : null,
          )
        : null;
    const apply = async () => {
      const applied = await runChange(
        ctx,
        messages,
        () =>
          ctx.transport.callTool<ImportResult>("kv_import", {
            document,
            mode: planned.mode,
            dry_run: false,
            plan_fingerprint: planned.plan_fingerprint,
          }),
        (result) => `Imported: ${result.applied} operations applied (revision ${result.revision}).`,
      );
      if (applied) fill(planArea);
    };
    const changes = planned.plan.create.length + planned.plan.update.length + planned.plan.delete.length;
    fill(
      planArea,
      h(
        "section",
        { class: "plan-review", "aria-labelledby": "plan-heading" },
        h("h4", { id: "plan-heading" }, "The import's plan"),
        h("p", null, `It would ${planned.change}.`),
        group("Create", planned.plan.create),
        group("Update", planned.plan.update),
        group("Delete", planned.plan.delete),
        h("p", { class: "hint" }, `Unchanged: ${planned.plan.unchanged.length}.`),
        changes
          ? button("Apply this plan", () => void apply(), planned.plan.delete.length ? "warning" : "primary")
          : h("p", null, "Nothing to apply."),
      ),
    );
  };

  return h(
    "form",
    { class: "form", on: { submit: (e) => void plan(e) } },
    h("h3", null, "Import"),
    h("div", { class: "field" }, h("label", { for: file.id }, "File to import"), file),
    h("div", { class: "field" }, h("label", { for: mode.id }, "Mode"), mode),
    h("button", { type: "submit", class: "button button--secondary" }, "Show the plan"),
    planArea,
  );
}

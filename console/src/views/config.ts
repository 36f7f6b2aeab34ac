/**
 * Configuration: browse keys as a tree of `/` folders (one level at a time, paged), open a key to read,
 * edit, compare versions and roll back (config-key.ts), and export or import a prefix (config-transfer.ts).
 * Where it is: #/config?prefix=app/ shows a folder, #/config?key=app/db a key.
 */
import { button, fill, h, uid } from "../dom";
import { type KeyEntry, ancestors, listLevel } from "../keys";
import { type View, type ViewContext, errorText, notice, noticeArea } from "../view";
import { mountKey } from "./config-key";
import { transferPanel } from "./config-transfer";

export const configView: View = {
  id: "config",
  title: "Configuration",
  needs: "kv_list",
  mount(root, ctx) {
    const key = ctx.params.get("key");
    if (key !== null) return mountKey(root, ctx, key, ctx.params.get("new") === "1");
    mountFolder(root, ctx, ctx.params.get("prefix") ?? "");
    return () => undefined;
  },
};

export function configHash(where: { prefix?: string; key?: string; new?: boolean }): string {
  const params = new URLSearchParams();
  if (where.key !== undefined) params.set("key", where.key);
  else params.set("prefix", where.prefix ?? "");
  if (where.new) params.set("new", "1");
  return `#/config?${params.toString()}`;
}

export function breadcrumbs(path: string, current: string | null): HTMLElement {
  const folders = ancestors(path);
  const crumbs: HTMLElement[] = [h("li", null, h("a", { href: configHash({ prefix: "" }) }, "All keys"))];
  for (const folder of folders) {
    crumbs.push(
      h(
        "li",
        null,
        h("a", { href: configHash({ prefix: folder }) }, folder.slice(folder.lastIndexOf("/", folder.length - 2) + 1)),
      ),
    );
  }
  if (current !== null) crumbs.push(h("li", { "aria-current": "page" }, current));
  return h("nav", { class: "breadcrumbs", "aria-label": "Where you are" }, h("ol", null, crumbs));
}

function mountFolder(root: HTMLElement, ctx: ViewContext, prefix: string): void {
  const messages = noticeArea();
  const tbody = h("tbody");
  const more = h("div", { class: "more" });
  const status = h("p", { class: "view-summary", role: "status" }, "Loading keys…");
  const shown = prefix || "all allowed keys";
  const name = prefix ? prefix.slice(prefix.lastIndexOf("/", prefix.length - 2) + 1) : null;

  let count = 0;
  const load = async (cursor: string | null) => {
    fill(more);
    try {
      const page = await listLevel(ctx.transport, prefix, cursor);
      tbody.append(...page.entries.map((entry) => entryRow(entry)));
      count += page.entries.length;
      status.textContent =
        count === 0
          ? `No keys under ${shown}.`
          : `${count} ${count === 1 ? "entry" : "entries"} under ${shown}${page.next ? " so far" : ""}.`;
      if (page.next) {
        const next = page.next;
        fill(
          more,
          button("Show more", () => void load(next), "secondary"),
        );
      }
    } catch (error) {
      messages.show(notice("error", `Could not list ${shown}: ${errorText(error)}`));
      status.textContent = "";
    }
  };

  fill(
    root,
    breadcrumbs(prefix, name),
    h("h1", null, prefix ? `Keys in ${prefix}` : "Configuration"),
    messages.element,
    goToForm(ctx, prefix),
    ctx.can("kv_put") ? newKeyForm(ctx, prefix) : null,
    status,
    h(
      "div",
      { class: "table-scroll" },
      h(
        "table",
        { class: "table keys-table" },
        h("caption", null, `Keys and folders in ${shown}`),
        h(
          "colgroup",
          null,
          h("col", { class: "col-key" }),
          h("col", { class: "col-kind" }),
          h("col", { class: "col-rev" }),
          h("col", { class: "col-rev" }),
        ),
        h(
          "thead",
          null,
          h(
            "tr",
            null,
            ["Name", "Kind", "Modified at revision", "Version"].map((t) => h("th", { scope: "col" }, t)),
          ),
        ),
        tbody,
      ),
    ),
    more,
    transferPanel(ctx, prefix),
  );
  void load(null);
}

function entryRow(entry: KeyEntry): HTMLTableRowElement {
  const name = entry.name === "" ? "(the key named like this folder)" : entry.name;
  const href = entry.kind === "folder" ? configHash({ prefix: entry.path }) : configHash({ key: entry.path });
  return h(
    "tr",
    null,
    h("th", { scope: "row", class: "mono" }, h("a", { href }, name)),
    h("td", null, entry.kind),
    h("td", { class: "numeric" }, entry.mod_revision === undefined ? "" : String(entry.mod_revision)),
    h("td", { class: "numeric" }, entry.version === undefined ? "" : String(entry.version)),
  );
}

/** Jump straight to a key, or to a folder (a path ending in '/'): the way through 100,000 keys. */
function goToForm(ctx: ViewContext, prefix: string): HTMLElement {
  const input = h("input", {
    id: uid("goto"),
    class: "input",
    autocomplete: "off",
    value: prefix,
    spellcheck: "false",
  });
  const submit = (event: Event) => {
    event.preventDefault();
    const path = input.value.trim();
    ctx.navigate(path === "" || path.endsWith("/") ? configHash({ prefix: path }) : configHash({ key: path }));
  };
  return h(
    "form",
    { class: "inline-form", role: "search", "aria-label": "Go to a key or folder", on: { submit } },
    h(
      "div",
      { class: "field field--inline field--grow" },
      h("label", { for: input.id }, "Go to key or folder"),
      h("p", { class: "hint", id: `${input.id}-hint` }, "A folder ends with /, e.g. app/db/"),
      input,
    ),
    h("button", { type: "submit", class: "button button--secondary" }, "Go"),
  );
}

function newKeyForm(ctx: ViewContext, prefix: string): HTMLElement {
  const input = h("input", { id: uid("new"), class: "input", autocomplete: "off", spellcheck: "false" });
  input.setAttribute("aria-describedby", `${input.id}-hint`);
  const submit = (event: Event) => {
    event.preventDefault();
    const name = input.value.trim();
    if (name) ctx.navigate(configHash({ key: prefix + name, new: true }));
  };
  return h(
    "details",
    { class: "panel" },
    h("summary", null, "New key"),
    h(
      "form",
      { class: "inline-form", on: { submit } },
      h(
        "div",
        { class: "field field--inline field--grow" },
        h("label", { for: input.id }, "Name of the new key"),
        h(
          "p",
          { class: "hint", id: `${input.id}-hint` },
          prefix ? `Inside ${prefix}` : "The whole key, e.g. app/db/url",
        ),
        input,
      ),
      h("button", { type: "submit", class: "button button--primary" }, "Create"),
    ),
  );
}

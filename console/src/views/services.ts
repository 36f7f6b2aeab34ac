/**
 * Services: every registered instance with its health, live. The view follows the server's
 * kk://services resource (a subscription, not polling): on each update it reads the resource again
 * and changes only the cells that changed, so rows keep their place while statuses change.
 */
import { button, field, fill, h, setText, uid } from "../dom";
import {
  type View,
  type ViewContext,
  errorText,
  notice,
  noticeArea,
  runChange,
  setStatus,
  statusBadge,
  timeText,
} from "../view";

export const SERVICES_URI = "kk://services";

interface Instance {
  type: "http" | "grpc" | "tcp";
  name: string;
  addr: string;
  status: string;
  output: string;
  since: string | null;
  checked_at: string | null;
  metadata: Record<string, string>;
  weight: number;
  lease: number;
}

interface ServicesDocument {
  hub: string | null;
  count: number;
  services: Record<string, Instance[]>;
}

interface CheckNow {
  name: string;
  addr: string;
  result: string;
  latency_ms: number;
  output: string;
  status: string;
}

interface Row {
  row: HTMLTableRowElement;
  status: HTMLSpanElement;
  since: HTMLTimeElement;
  checked: HTMLTimeElement;
  output: HTMLElement;
  weight: HTMLTableCellElement;
  metadata: HTMLTableCellElement;
  instance: Instance;
}

const STATUSES = ["passing", "warning", "critical"];

export const servicesView: View = {
  id: "services",
  title: "Services",
  needs: "service_list",
  mount(root, ctx) {
    const rows = new Map<string, Row>();
    const messages = noticeArea();
    const summary = h("p", { class: "view-summary", "aria-live": "off" }, "Loading services…");
    const changes = h("div", { class: "visually-hidden", role: "status", "aria-live": "polite" });
    const nameFilter = h("input", { type: "search", id: "filter-name", class: "input", autocomplete: "off" });
    const statusFilter = h(
      "select",
      { id: "filter-status", class: "select" },
      h("option", { value: "" }, "Any status"),
      STATUSES.map((s) => h("option", { value: s }, s)),
    );
    const caption = h("caption", null, "Registered instances");
    const tbody = h("tbody");
    const empty = h("p", { class: "empty", hidden: true }, "No instance matches.");
    const writable = ctx.can("service_deregister");
    const checkable = ctx.can("service_check");

    const table = h(
      "table",
      { class: "table services-table" },
      caption,
      h(
        "colgroup",
        null,
        h("col", { class: "col-name" }),
        h("col", { class: "col-type" }),
        h("col", { class: "col-addr" }),
        h("col", { class: "col-status" }),
        h("col", { class: "col-time" }),
        h("col", { class: "col-time" }),
        h("col", { class: "col-output" }),
        h("col", { class: "col-weight" }),
        h("col", { class: "col-meta" }),
        checkable || writable ? h("col", { class: "col-actions" }) : null,
      ),
      h(
        "thead",
        null,
        h(
          "tr",
          null,
          ["Service", "Type", "Address", "Status", "Since", "Last check", "Output", "Weight", "Metadata"].map((t) =>
            h("th", { scope: "col", class: t === "Weight" ? "numeric" : null }, t),
          ),
          checkable || writable ? h("th", { scope: "col" }, "Actions") : null,
        ),
      ),
      tbody,
    );

    const applyFilter = () => {
      const name = nameFilter.value.trim().toLowerCase();
      const status = statusFilter.value;
      let shown = 0;
      for (const entry of rows.values()) {
        const visible =
          (!name || entry.instance.name.toLowerCase().includes(name)) && (!status || entry.instance.status === status);
        entry.row.hidden = !visible;
        if (visible) shown += 1;
      }
      setText(caption, `Registered instances (${shown} of ${rows.size} shown)`);
      empty.hidden = shown > 0 || rows.size === 0;
    };
    nameFilter.addEventListener("input", applyFilter);
    statusFilter.addEventListener("change", applyFilter);

    const deregister = async (instance: Instance) => {
      await runChange(
        ctx,
        messages,
        () =>
          ctx.transport.callTool("service_deregister", {
            name: instance.name,
            addr: instance.addr,
            type: instance.type,
          }),
        () => `Deregistered ${instance.name} at ${instance.addr}.`,
      );
    };

    const checkNow = async (instance: Instance) => {
      messages.show(null);
      try {
        const result = await ctx.transport.callTool<CheckNow>("service_check", {
          name: instance.name,
          addr: instance.addr,
          type: instance.type,
        });
        messages.show(
          notice(
            result.result === "passing" ? "success" : "warning",
            h(
              "p",
              null,
              `Check of ${result.name} at ${result.addr}: `,
              statusBadge(result.result),
              ` in ${result.latency_ms.toFixed(1)} ms. The hub's status stays ${result.status} until its own checks change it.`,
            ),
            result.output ? h("pre", { class: "output" }, result.output) : null,
          ),
        );
        messages.element.scrollIntoView({ block: "nearest" }); // the result shows above the table
      } catch (error) {
        messages.show(notice("error", errorText(error)));
      }
    };

    const makeRow = (instance: Instance): Row => {
      const label = `${instance.name} at ${instance.addr}`;
      const status = statusBadge(instance.status);
      const since = h("time");
      const checked = h("time");
      const output = h("span", { class: "output-cell" });
      const weight = h("td", { class: "numeric" });
      const metadata = h("td", { class: "meta-cell" });
      const actions =
        checkable || writable
          ? h(
              "td",
              { class: "actions" },
              checkable
                ? button("Check now", () => void checkNow(entry.instance), "secondary", {
                    "aria-label": `Check ${label} now`,
                  })
                : null,
              writable
                ? button("Deregister", () => void deregister(entry.instance), "warning", {
                    "aria-label": `Deregister ${label}`,
                  })
                : null,
            )
          : null;
      const row = h(
        "tr",
        { "data-instance": key(instance) },
        h("th", { scope: "row" }, instance.name),
        h("td", null, instance.type),
        h("td", { class: "mono" }, instance.addr),
        h("td", null, status),
        h("td", null, since),
        h("td", null, checked),
        h("td", null, output),
        weight,
        metadata,
        actions,
      );
      const entry: Row = { row, status, since, checked, output, weight, metadata, instance };
      update(entry, instance);
      return entry;
    };

    const update = (entry: Row, instance: Instance) => {
      const before = entry.instance;
      entry.instance = instance;
      setStatus(entry.status, instance.status);
      setTime(entry.since, instance.since);
      setTime(entry.checked, instance.checked_at);
      setText(entry.output, instance.output);
      setText(entry.weight, String(instance.weight));
      const meta = Object.entries(instance.metadata)
        .map(([k, v]) => `${k}=${v}`)
        .join(", ");
      setText(entry.metadata, meta);
      if (before !== instance && before.status !== instance.status) {
        changes.textContent = `${instance.name} at ${instance.addr} is now ${instance.status}.`;
      }
    };

    const render = (doc: ServicesDocument) => {
      const seen = new Set<string>();
      const ordered: Row[] = [];
      let added = false;
      for (const name of Object.keys(doc.services).sort()) {
        for (const instance of [...doc.services[name]].sort((a, b) => a.addr.localeCompare(b.addr))) {
          const id = key(instance);
          seen.add(id);
          let entry = rows.get(id);
          if (entry) update(entry, instance);
          else {
            entry = makeRow(instance);
            rows.set(id, entry);
            added = true;
          }
          ordered.push(entry);
        }
      }
      let removed = false;
      for (const [id, entry] of rows) {
        if (!seen.has(id)) {
          entry.row.remove();
          rows.delete(id);
          removed = true;
        }
      }
      if (added || removed || tbody.childElementCount !== ordered.length) {
        tbody.append(...ordered.map((e) => e.row)); // moves rows into order; unchanged ones stay put
      }
      const counts = STATUSES.map((s) => `${ordered.filter((e) => e.instance.status === s).length} ${s}`);
      setText(
        summary,
        `${doc.count} instance${doc.count === 1 ? "" : "s"}: ${counts.join(", ")}. ` +
          (doc.hub ? `Checked by hub ${doc.hub}.` : "No hub is checking them now."),
      );
      applyFilter();
    };

    // Reading again on every update, at most one read at a time (a burst of updates costs one more read).
    let reading = false;
    let again = false;
    let stopped = false;
    const refresh = async () => {
      if (reading) {
        again = true;
        return;
      }
      reading = true;
      try {
        do {
          again = false;
          const text = await ctx.transport.readResource(SERVICES_URI);
          if (stopped) return;
          render(JSON.parse(text) as ServicesDocument);
        } while (again && !stopped);
      } catch (error) {
        if (!stopped) messages.show(notice("error", `Could not read the services: ${errorText(error)}`));
      } finally {
        reading = false;
      }
    };

    const register = ctx.can("service_register") ? registerForm(ctx, messages) : null;
    fill(
      root,
      h("h1", null, "Services"),
      summary,
      changes,
      messages.element,
      register,
      h(
        "form",
        {
          class: "filters",
          role: "search",
          "aria-label": "Filter instances",
          on: { submit: (e) => e.preventDefault() },
        },
        h("div", { class: "field field--inline" }, h("label", { for: nameFilter.id }, "Filter by name"), nameFilter),
        h(
          "div",
          { class: "field field--inline" },
          h("label", { for: statusFilter.id }, "Filter by status"),
          statusFilter,
        ),
      ),
      h("div", { class: "table-scroll" }, table),
      empty,
    );

    let unsubscribe: (() => Promise<void>) | null = null;
    void (async () => {
      try {
        unsubscribe = await ctx.transport.subscribe(SERVICES_URI, () => void refresh());
      } catch (error) {
        messages.show(notice("warning", `Live updates are off: ${errorText(error)}`));
      }
      if (stopped) void unsubscribe?.();
      await refresh();
    })();

    return () => {
      stopped = true;
      void unsubscribe?.();
    };
  },
};

function key(instance: Instance): string {
  return `${instance.type}/${instance.name}/${instance.addr}`;
}

function setTime(element: HTMLTimeElement, iso: string | null): void {
  if (iso) {
    if (element.dateTime !== iso) element.dateTime = iso;
  } else element.removeAttribute("datetime");
  setText(element, timeText(iso));
}

/** Register an instance: the common fields; the server fills in the defaults and says what is wrong. */
function registerForm(ctx: ViewContext, messages: ReturnType<typeof noticeArea>): HTMLElement {
  const name = h("input", { id: uid("reg"), class: "input", required: true, autocomplete: "off" });
  const addr = h("input", { id: uid("reg"), class: "input", required: true, autocomplete: "off" });
  const type = h(
    "select",
    { id: uid("reg"), class: "select" },
    ["http", "grpc", "tcp"].map((t) => h("option", { value: t }, t)),
  );
  const target = h("input", { id: uid("reg"), class: "input", autocomplete: "off" });
  const interval = h("input", { id: uid("reg"), class: "input input--short", inputmode: "decimal" });
  const failures = h("input", { id: uid("reg"), class: "input input--short", inputmode: "numeric" });
  const weight = h("input", { id: uid("reg"), class: "input input--short", inputmode: "numeric", value: "1" });
  const metadata = h("textarea", { id: uid("reg"), class: "textarea textarea--short", rows: 2 });
  const submit = async (event: Event) => {
    event.preventDefault();
    const check: Record<string, unknown> = {};
    if (target.value.trim()) check.addr = target.value.trim();
    if (interval.value.trim()) check.interval = Number(interval.value);
    if (failures.value.trim()) check.failures_before_critical = Number(failures.value);
    const meta: Record<string, string> = {};
    for (const line of metadata.value.split("\n")) {
      const at = line.indexOf("=");
      if (at > 0) meta[line.slice(0, at).trim()] = line.slice(at + 1).trim();
    }
    const args: Record<string, unknown> = {
      name: name.value.trim(),
      addr: addr.value.trim(),
      type: type.value,
      weight: Number(weight.value || "1"),
    };
    if (Object.keys(check).length) args.check = check;
    if (Object.keys(meta).length) args.metadata = meta;
    await runChange(
      ctx,
      messages,
      () => ctx.transport.callTool<{ change: string }>("service_register", args),
      (result) => `Registered: ${result.change}.`,
    );
  };

  return h(
    "details",
    { class: "panel" },
    h("summary", null, "Register an instance"),
    h(
      "form",
      { class: "form", on: { submit: (e) => void submit(e) } },
      h(
        "div",
        { class: "form-grid" },
        field("Service name", name),
        field("Address", addr, "host:port, e.g. 10.0.0.5:8080"),
        field("Type", type),
        field("Check target", target, "Optional: a URL for http (default http://<address>/KKHealthCheck)"),
        field("Check interval (seconds)", interval, "Optional: default 10"),
        field("Failures before critical", failures, "Optional: default 3"),
        field("Weight", weight),
        field("Metadata", metadata, "Optional: key=value, one per line"),
      ),
      h("button", { type: "submit", class: "button button--primary" }, "Register"),
    ),
  );
}

/**
 * Cluster: etcd's members, the leader, version, database size, alarms and raft index (cluster_status),
 * and a snapshot of the whole database into the server's backup directory (cluster_snapshot, with progress).
 */
import { button, field, fill, h, uid } from "../dom";
import {
  type View,
  type ViewContext,
  bytes,
  errorText,
  notice,
  noticeArea,
  runChange,
  statusBadge,
  summaryList,
} from "../view";

interface MemberStatus {
  version: string;
  db_size: number;
  db_size_in_use: number;
  revision: number;
  raft_term: number;
  raft_index: number;
  errors: string[];
}

interface Member {
  id: string;
  name: string;
  peer_urls: string[];
  client_urls: string[];
  is_leader: boolean;
  is_learner: boolean;
  status: MemberStatus | null;
  status_error: string | null;
}

interface ClusterStatus {
  cluster_id: string;
  leader_id: string | null;
  version: string;
  db_size: number;
  db_size_in_use: number;
  revision: number;
  raft_term: number;
  raft_index: number;
  members: Member[];
  alarms: { member_id: string; alarm: string }[];
  alarms_error: string | null;
  errors: string[];
}

interface SnapshotResult {
  path: string;
  size: number;
  sha256: string;
  revision: number;
  restore_hint: string;
}

export const clusterView: View = {
  id: "cluster",
  title: "Cluster",
  needs: "cluster_status",
  mount(root, ctx) {
    const messages = noticeArea();
    const body = h("div", null, h("p", { class: "view-summary" }, "Loading the cluster's status…"));
    const reload = async () => {
      try {
        fill(body, renderStatus(await ctx.transport.callTool<ClusterStatus>("cluster_status", {})));
      } catch (error) {
        messages.show(notice("error", errorText(error)));
      }
    };
    fill(
      root,
      h("h1", null, "Cluster"),
      messages.element,
      h(
        "div",
        { class: "button-group" },
        button("Refresh", () => void reload(), "secondary"),
      ),
      body,
      ctx.can("cluster_snapshot") ? snapshotForm(ctx) : null,
    );
    void reload();
    return () => undefined;
  },
};

function renderStatus(status: ClusterStatus): HTMLElement {
  const leader = status.members.find((m) => m.is_leader);
  const alarms = status.alarms_error
    ? h("p", null, `Alarms could not be read: ${status.alarms_error}`)
    : status.alarms.length
      ? h(
          "ul",
          { class: "alarm-list" },
          status.alarms.map((a) => h("li", null, statusBadge(a.alarm, "critical"), ` on member ${a.member_id}`)),
        )
      : statusBadge("no alarms", "passing");
  return h(
    "div",
    null,
    summaryList([
      ["Cluster id", status.cluster_id],
      [
        "Leader",
        leader
          ? `${leader.name || "(unnamed)"} (${leader.id})`
          : (status.leader_id ?? "none: the cluster has no quorum"),
      ],
      ["etcd version", status.version],
      ["Database size", `${bytes(status.db_size)} (${bytes(status.db_size_in_use)} in use)`],
      ["Store revision", String(status.revision)],
      ["Raft term", String(status.raft_term)],
      ["Raft index", String(status.raft_index)],
      ["Alarms", alarms],
    ]),
    status.errors.length ? notice("warning", `The member reports: ${status.errors.join("; ")}`) : null,
    h(
      "div",
      { class: "table-scroll" },
      h(
        "table",
        { class: "table" },
        h("caption", null, `Members (${status.members.length})`),
        h(
          "thead",
          null,
          h(
            "tr",
            null,
            ["Name", "Id", "Role", "Client URLs", "Version", "Database", "Raft index", "Problems"].map((t) =>
              h("th", { scope: "col" }, t),
            ),
          ),
        ),
        h(
          "tbody",
          null,
          status.members.map((m) =>
            h(
              "tr",
              null,
              h("th", { scope: "row" }, m.name || "(not started)"),
              h("td", { class: "mono" }, m.id),
              h("td", null, m.is_leader ? "leader" : m.is_learner ? "learner" : "follower"),
              h("td", { class: "mono" }, m.client_urls.join(", ")),
              h("td", null, m.status?.version ?? "—"),
              h("td", null, m.status ? bytes(m.status.db_size) : "—"),
              h("td", { class: "numeric" }, m.status ? String(m.status.raft_index) : "—"),
              h("td", null, m.status_error ?? (m.status?.errors.join("; ") || "none")),
            ),
          ),
        ),
      ),
    ),
  );
}

function snapshotForm(ctx: ViewContext): HTMLElement {
  const messages = noticeArea();
  const name = h("input", { id: uid("snapshot"), class: "input", autocomplete: "off", spellcheck: "false" });
  const progress = h("progress", {
    class: "progress",
    max: 1,
    value: 0,
    hidden: true,
    "aria-label": "Snapshot progress",
  });
  const submit = async (event: Event) => {
    event.preventDefault();
    progress.hidden = false;
    progress.value = 0;
    const args: Record<string, unknown> = {};
    if (name.value.trim()) args.name = name.value.trim();
    await runChange(
      ctx,
      messages,
      () =>
        ctx.transport.callTool<SnapshotResult>("cluster_snapshot", args, (p) => {
          if (p.total) {
            progress.max = p.total;
            progress.value = p.progress;
          }
        }),
      (r) =>
        h(
          "div",
          null,
          h("p", null, `Saved a snapshot of revision ${r.revision} (${bytes(r.size)}) to ${r.path}.`),
          h("p", { class: "mono hint" }, `sha256 ${r.sha256}`),
          h("p", { class: "hint" }, r.restore_hint),
        ),
    );
    progress.hidden = true;
  };
  return h(
    "section",
    { class: "section", "aria-labelledby": "snapshot-heading" },
    h("h2", { id: "snapshot-heading" }, "Snapshot"),
    h(
      "p",
      null,
      "Saves etcd's whole database (every key with its history, users and roles) as a file in the server's backup directory.",
    ),
    messages.element,
    h(
      "form",
      { class: "form", on: { submit: (e) => void submit(e) } },
      field("File name", name, "Optional: e.g. before-upgrade.db (default: etcd-snapshot-<time>.db)"),
      progress,
      h("button", { type: "submit", class: "button button--primary" }, "Take a snapshot"),
    ),
  );
}

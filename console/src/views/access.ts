/**
 * Access: etcd's own users and roles. Users with the roles they hold, roles with their key
 * permissions (as prefixes where they are), whether etcd enforces authentication; add a user (a
 * generated password is shown once, with a copy button), add a role, grant and revoke. Revokes and
 * deletes take access away, so the server asks for confirmation and the dialog shows its question.
 */
import { button, field, fill, h, uid } from "../dom";
import { type View, errorText, notice, noticeArea, runChange, statusBadge, summaryList } from "../view";

interface AuthStatus {
  enabled: boolean;
  users: number | null;
  roles: number | null;
  connected_as: string | null;
  note: string | null;
}

interface User {
  name: string;
  roles: string[];
}

interface Permission {
  key: string;
  range_end: string | null;
  prefix: boolean;
  permission: "read" | "write" | "readwrite";
}

interface Role {
  name: string;
  permissions: Permission[];
}

interface UserAddResult {
  name: string;
  roles: string[];
  password: string | null;
  change: string;
}

export const accessView: View = {
  id: "access",
  title: "Access",
  needs: "user_list",
  mount(root, ctx) {
    const messages = noticeArea();
    const status = h("div");
    const users = h("div");
    const roles = h("div");
    const secret = h("div", { class: "secret-area" });
    let roleNames: string[] = [];

    const reload = async () => {
      try {
        const [auth, userList, roleList] = await Promise.all([
          ctx.can("auth_status") ? ctx.transport.callTool<AuthStatus>("auth_status", {}) : Promise.resolve(null),
          ctx.transport.callTool<{ users: User[] }>("user_list", {}),
          ctx.can("role_list")
            ? ctx.transport.callTool<{ roles: Role[] }>("role_list", {})
            : Promise.resolve({ roles: [] }),
        ]);
        roleNames = roleList.roles.map((r) => r.name);
        if (!roleNames.includes("root")) roleNames.unshift("root");
        if (auth) fill(status, authSummary(auth));
        fill(users, usersTable(userList.users));
        fill(roles, rolesTable(roleList.roles));
      } catch (error) {
        messages.show(notice("error", errorText(error)));
      }
    };

    const change = async (tool: string, args: Record<string, unknown>) => {
      const done = await runChange(
        ctx,
        messages,
        () => ctx.transport.callTool<{ change: string }>(tool, args),
        (result) => `Done: ${result.change}.`,
      );
      if (done) await reload();
    };

    const usersTable = (list: User[]) => {
      const grant = ctx.can("user_grant_role");
      const revoke = ctx.can("user_revoke_role");
      const remove = ctx.can("user_delete");
      return h(
        "div",
        { class: "table-scroll" },
        h(
          "table",
          { class: "table" },
          h("caption", null, `Users (${list.length})`),
          h(
            "thead",
            null,
            h(
              "tr",
              null,
              h("th", { scope: "col" }, "User"),
              h("th", { scope: "col" }, "Roles"),
              grant || remove ? h("th", { scope: "col" }, "Actions") : null,
            ),
          ),
          h(
            "tbody",
            null,
            list.map((user) =>
              h(
                "tr",
                null,
                h("th", { scope: "row" }, user.name),
                h(
                  "td",
                  null,
                  user.roles.length
                    ? h(
                        "ul",
                        { class: "tag-list" },
                        user.roles.map((role) =>
                          h(
                            "li",
                            { class: "tag" },
                            role,
                            revoke
                              ? button(
                                  "Revoke",
                                  () => void change("user_revoke_role", { name: user.name, role }),
                                  "secondary",
                                  {
                                    class: "button button--secondary button--small",
                                    "aria-label": `Revoke role ${role} from ${user.name}`,
                                  },
                                )
                              : null,
                          ),
                        ),
                      )
                    : h("span", { class: "hint" }, "no roles"),
                ),
                grant || remove
                  ? h(
                      "td",
                      { class: "actions" },
                      grant ? grantRoleForm(user) : null,
                      remove
                        ? button("Delete", () => void change("user_delete", { name: user.name }), "warning", {
                            "aria-label": `Delete user ${user.name}`,
                          })
                        : null,
                    )
                  : null,
              ),
            ),
          ),
        ),
      );
    };

    const grantRoleForm = (user: User) => {
      const select = h(
        "select",
        { id: uid("grant"), class: "select" },
        roleNames.filter((r) => !user.roles.includes(r)).map((r) => h("option", { value: r }, r)),
      );
      return h(
        "form",
        {
          class: "inline-form",
          on: {
            submit: (e) => {
              e.preventDefault();
              if (select.value) void change("user_grant_role", { name: user.name, role: select.value });
            },
          },
        },
        h("label", { for: select.id, class: "visually-hidden" }, `Role to grant to ${user.name}`),
        select,
        h(
          "button",
          {
            type: "submit",
            class: "button button--secondary button--small",
            "aria-label": `Grant the chosen role to ${user.name}`,
          },
          "Grant",
        ),
      );
    };

    const rolesTable = (list: Role[]) => {
      const revoke = ctx.can("role_revoke_permission");
      const remove = ctx.can("role_delete");
      return h(
        "div",
        { class: "table-scroll" },
        h(
          "table",
          { class: "table" },
          h("caption", null, `Roles (${list.length})`),
          h(
            "thead",
            null,
            h(
              "tr",
              null,
              h("th", { scope: "col" }, "Role"),
              h("th", { scope: "col" }, "Key permissions"),
              remove ? h("th", { scope: "col" }, "Actions") : null,
            ),
          ),
          h(
            "tbody",
            null,
            list.map((role) =>
              h(
                "tr",
                null,
                h("th", { scope: "row" }, role.name),
                h(
                  "td",
                  null,
                  role.permissions.length
                    ? h(
                        "ul",
                        { class: "permission-list" },
                        role.permissions.map((p) =>
                          h(
                            "li",
                            null,
                            h("span", { class: `permission permission--${p.permission}` }, p.permission),
                            " ",
                            h("span", { class: "mono" }, describeRange(p)),
                            revoke && role.name !== "root"
                              ? button(
                                  "Revoke",
                                  () =>
                                    void change("role_revoke_permission", {
                                      role: role.name,
                                      key: p.key,
                                      range_end: p.prefix ? null : p.range_end,
                                      prefix: p.prefix,
                                    }),
                                  "secondary",
                                  {
                                    class: "button button--secondary button--small",
                                    "aria-label": `Revoke ${p.permission} on ${describeRange(p)} from role ${role.name}`,
                                  },
                                )
                              : null,
                          ),
                        ),
                      )
                    : h(
                        "span",
                        { class: "hint" },
                        role.name === "root" ? "every key (etcd's admin role)" : "no permissions",
                      ),
                ),
                remove
                  ? h(
                      "td",
                      { class: "actions" },
                      role.name === "root"
                        ? null
                        : button("Delete", () => void change("role_delete", { name: role.name }), "warning", {
                            "aria-label": `Delete role ${role.name}`,
                          }),
                    )
                  : null,
              ),
            ),
          ),
        ),
      );
    };

    const addUser = async (name: string, roleList: string[]) => {
      fill(secret);
      const result = await runChange(
        ctx,
        messages,
        () => ctx.transport.callTool<UserAddResult>("user_add", { name, roles: roleList }),
        (r) => `Done: ${r.change}.`,
      );
      if (!result) return;
      if (result.password)
        fill(
          secret,
          passwordOnce(result.name, result.password, () => fill(secret)),
        );
      await reload();
    };

    fill(
      root,
      h("h1", null, "Access"),
      h("p", { class: "view-summary" }, "etcd's own users and roles: who may read and write which keys in etcd."),
      messages.element,
      secret,
      status,
      h("h2", null, "Users"),
      ctx.can("user_add") ? addUserForm(addUser) : null,
      users,
      h("h2", null, "Roles"),
      ctx.can("role_add") ? addRoleForm((name) => void change("role_add", { name })) : null,
      ctx.can("role_grant_permission")
        ? grantPermissionForm((args) => void change("role_grant_permission", args))
        : null,
      roles,
    );
    void reload();
    return () => undefined;
  },
};

function authSummary(auth: AuthStatus): HTMLElement {
  const state = auth.enabled
    ? statusBadge("enabled", "passing")
    : statusBadge("disabled: every client may do everything", "warning");
  return h(
    "section",
    { "aria-labelledby": "auth-heading" },
    h("h2", { id: "auth-heading" }, "Authentication"),
    summaryList([
      ["etcd authentication", state],
      ["Users", auth.users === null ? "unknown" : String(auth.users)],
      ["Roles", auth.roles === null ? "unknown" : String(auth.roles)],
      ["This server connects as", auth.connected_as ?? "no user (no credentials)"],
    ]),
    auth.note ? h("p", { class: "hint" }, auth.note) : null,
  );
}

/** "prefix app/", "key app/db", "keys from a to b", "every key". */
export function describeRange(p: Permission): string {
  if (p.prefix) return p.key === "" ? "every key" : `prefix ${p.key}`;
  if (p.range_end === null) return `key ${p.key}`;
  if (p.range_end === "\u0000") return p.key === "" ? "every key" : `every key from ${p.key} on`;
  return `keys from ${p.key} up to ${p.range_end}`;
}

/** The generated password, once: a read-only field and a copy button; gone when dismissed. */
function passwordOnce(user: string, password: string, dismiss: () => void): HTMLElement {
  const input = h("input", {
    id: uid("password"),
    class: "input mono",
    readonly: true,
    value: password,
    autocomplete: "off",
  });
  const copied = h("span", { class: "hint", role: "status" });
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(password);
      copied.textContent = "Copied.";
    } catch {
      input.select(); // no clipboard access (plain http off loopback): select it for Ctrl+C
      copied.textContent = "Selected: press Ctrl+C (or ⌘C) to copy.";
    }
  };
  return h(
    "div",
    { class: "notice notice--warning", role: "alert" },
    h("p", { class: "notice__label" }, `Password for ${user}: shown once`),
    h("p", null, "Store it now (a password manager, a secret store). It is not shown again and not kept here."),
    h("div", { class: "field" }, h("label", { for: input.id }, `Generated password for ${user}`), input),
    h(
      "div",
      { class: "button-group" },
      button("Copy password", () => void copy(), "primary"),
      button("I have stored it", dismiss, "secondary"),
      copied,
    ),
  );
}

function addUserForm(add: (name: string, roles: string[]) => Promise<void>): HTMLElement {
  const name = h("input", { id: uid("user"), class: "input", autocomplete: "off", spellcheck: "false" });
  const roles = h("input", { id: uid("roles"), class: "input", autocomplete: "off", spellcheck: "false" });
  return h(
    "details",
    { class: "panel" },
    h("summary", null, "Add a user"),
    h(
      "form",
      {
        class: "form",
        on: {
          submit: (e) => {
            e.preventDefault();
            const list = roles.value
              .split(",")
              .map((r) => r.trim())
              .filter(Boolean);
            void add(name.value.trim(), list);
          },
        },
      },
      field("User name", name),
      field("Roles", roles, "Optional: comma-separated, each must exist (or be root)"),
      h("p", { class: "hint" }, "A strong password is generated and shown once."),
      h("button", { type: "submit", class: "button button--primary" }, "Add user"),
    ),
  );
}

function addRoleForm(add: (name: string) => void): HTMLElement {
  const name = h("input", { id: uid("role"), class: "input", autocomplete: "off", spellcheck: "false" });
  return h(
    "details",
    { class: "panel" },
    h("summary", null, "Add a role"),
    h(
      "form",
      { class: "form", on: { submit: (e) => (e.preventDefault(), add(name.value.trim())) } },
      field("Role name", name),
      h("button", { type: "submit", class: "button button--primary" }, "Add role"),
    ),
  );
}

function grantPermissionForm(grant: (args: Record<string, unknown>) => void): HTMLElement {
  const role = h("input", { id: uid("perm-role"), class: "input", autocomplete: "off", spellcheck: "false" });
  const key = h("input", { id: uid("perm-key"), class: "input", autocomplete: "off", spellcheck: "false" });
  const permission = h(
    "select",
    { id: uid("perm"), class: "select" },
    ["read", "write", "readwrite"].map((p) => h("option", { value: p }, p)),
  );
  const prefix = h("input", { type: "checkbox", id: uid("perm-prefix"), checked: true });
  return h(
    "details",
    { class: "panel" },
    h("summary", null, "Grant a key permission to a role"),
    h(
      "form",
      {
        class: "form",
        on: {
          submit: (e) => {
            e.preventDefault();
            grant({ role: role.value.trim(), key: key.value, permission: permission.value, prefix: prefix.checked });
          },
        },
      },
      field("Role", role, "An existing role (listed below)"),
      field("Key or prefix", key, "e.g. app/ (with 'Every key starting with it'), or one key"),
      field("Permission", permission),
      h("div", { class: "checkbox" }, prefix, h("label", { for: prefix.id }, "Every key starting with it (a prefix)")),
      h("button", { type: "submit", class: "button button--primary" }, "Grant permission"),
    ),
  );
}

/**
 * The web console: connect to /mcp (asking for a token when the server wants one), then show the
 * views this client's tools allow, one at a time, chosen by the address (#/services, #/config, ...).
 */
import "./zod-jitless";
import { confirmDialog } from "./dialog";
import { button, fill, h } from "./dom";
import { HttpMcpTransport, LoginRefused } from "./mcp-http";
import { type Identity, type ToolInfo, identity } from "./transport";
import { type View, type ViewContext, errorText, notice } from "./view";
import { accessView } from "./views/access";
import { auditView } from "./views/audit";
import { clusterView } from "./views/cluster";
import { configView } from "./views/config";
import { showLogin } from "./views/login";
import { servicesView } from "./views/services";

const VIEWS: View[] = [servicesView, configView, accessView, clusterView, auditView];
const TOKEN_KEY = "kk-etcd-mcp.token";
const PRODUCT = "kk-etcd-mcp";

const app = document.getElementById("app") as HTMLElement;
let connection: HttpMcpTransport | null = null;
let declines = 0;

async function confirm(question: string): Promise<boolean> {
  const confirmed = await confirmDialog(question);
  if (!confirmed) declines += 1;
  return confirmed;
}

window.addEventListener("pagehide", () => connection?.closeOnUnload());
void boot();

async function boot(): Promise<void> {
  const token = sessionStorage.getItem(TOKEN_KEY) ?? undefined;
  if (!token && document.documentElement.dataset.signIn === "token") {
    showLogin(app, undefined, signIn); // the server said it wants a token: ask before the first request
    return;
  }
  fill(app, h("main", { id: "main", class: "main" }, h("p", { class: "view-summary", role: "status" }, "Connecting…")));
  let transport: HttpMcpTransport;
  try {
    transport = await HttpMcpTransport.connect({ token, confirm, onLost: lost });
  } catch (error) {
    if (error instanceof LoginRefused) {
      if (token) sessionStorage.removeItem(TOKEN_KEY);
      const reason = token || error.status === 429 ? `The server refused to sign you in: ${error.message}` : undefined;
      showLogin(app, reason, signIn);
      return;
    }
    showProblem(`Could not reach the server: ${errorText(error)}`);
    return;
  }
  connection = transport;
  try {
    const [who, tools] = await Promise.all([identity(transport), transport.tools()]);
    startShell(transport, who, tools, token !== undefined);
  } catch (error) {
    showProblem(`The server did not answer as expected: ${errorText(error)}`);
  }
}

function signIn(token: string): void {
  sessionStorage.setItem(TOKEN_KEY, token);
  void boot();
}

async function signOut(): Promise<void> {
  sessionStorage.removeItem(TOKEN_KEY);
  const closing = connection;
  connection = null;
  await closing?.close();
  void boot();
}

function lost(reason: string): void {
  const banner = document.getElementById("connection");
  if (!banner) return;
  fill(
    banner,
    notice(
      "error",
      h("p", null, `The console is not connected: ${reason}. Live updates have stopped.`),
      button("Reconnect", () => void reconnect(), "primary"),
    ),
  );
}

async function reconnect(): Promise<void> {
  const closing = connection;
  connection = null;
  await closing?.close();
  await boot();
}

function showProblem(text: string): void {
  fill(
    app,
    h(
      "main",
      { id: "main", class: "main" },
      h("h1", null, PRODUCT),
      notice("error", h("p", null, text)),
      button("Try again", () => void boot(), "primary"),
    ),
  );
}

function startShell(transport: HttpMcpTransport, who: Identity, tools: ToolInfo[], signedIn: boolean): void {
  const allowed = new Set(tools.map((t) => t.name));
  const views = VIEWS.filter((v) => allowed.has(v.needs));
  const announcer = h("div", { class: "visually-hidden", role: "status", "aria-live": "polite" });
  const main = h("main", { id: "main", class: "main", tabindex: "-1" });
  const links = new Map<string, HTMLAnchorElement>();
  const writes = tools.some((t) => !t.readOnly);
  const scopeNote = writes
    ? null
    : h(
        "p",
        { class: "read-only-note" },
        who.read_only
          ? "This server is read-only: you can look, not change."
          : `Your token's scope is ${who.scope}: you can look, not change.`,
      );
  fill(
    app,
    h(
      "a",
      { href: "#main", class: "skip-link", on: { click: (e) => (e.preventDefault(), main.focus()) } },
      "Skip to main content",
    ),
    h(
      "header",
      { class: "header" },
      h(
        "div",
        { class: "header__inner" },
        h("span", { class: "header__title" }, PRODUCT),
        h(
          "p",
          { class: "header__who", "aria-label": "Signed in as" },
          signedIn ? "Signed in as " : "Connected as ",
          h("strong", { class: "who-name" }, who.name),
          " · scope ",
          h("strong", { class: "who-scope" }, who.scope),
          signedIn
            ? button("Sign out", () => void signOut(), "secondary", { class: "button button--secondary button--small" })
            : null,
        ),
      ),
      h(
        "nav",
        { class: "nav", "aria-label": "Views" },
        h(
          "ul",
          null,
          views.map((view) => {
            const link = h("a", { href: `#/${view.id}`, class: "nav__link" }, view.title);
            links.set(view.id, link);
            return h("li", null, link);
          }),
        ),
      ),
    ),
    h("div", { id: "connection", class: "connection" }),
    scopeNote,
    main,
    announcer,
  );

  let stop: (() => void) | null = null;
  let shown = "";
  const route = (moveFocus: boolean) => {
    const hash = window.location.hash || `#/${views[0]?.id ?? ""}`;
    if (hash === shown) return;
    shown = hash;
    const [path, query = ""] = hash.slice(2).split("?");
    const view = views.find((v) => v.id === path) ?? views[0];
    stop?.();
    stop = null;
    for (const [id, link] of links) {
      if (id === view?.id) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    if (!view) {
      fill(main, h("h1", null, PRODUCT), h("p", null, "This token may call none of the console's tools."));
      return;
    }
    document.title = `${view.title} – ${PRODUCT}`;
    const ctx: ViewContext = {
      transport,
      identity: who,
      can: (tool) => allowed.has(tool),
      confirm,
      declines: () => declines,
      announce: (text) => {
        announcer.textContent = text;
      },
      params: new URLSearchParams(query),
      navigate: (to) => {
        window.location.hash = to;
      },
    };
    stop = view.mount(main, ctx);
    if (moveFocus) main.querySelector("h1")?.setAttribute("tabindex", "-1");
    if (moveFocus) (main.querySelector("h1") as HTMLElement | null)?.focus();
  };
  window.onhashchange = () => route(true);
  route(false);
}

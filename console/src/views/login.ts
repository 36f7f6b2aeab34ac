/**
 * Sign in: the server wants a bearer token. The token is kept in this tab's sessionStorage only (not a
 * cookie, so other sites cannot make the browser send it), until sign-out or the tab closes.
 */
import { fill, h } from "../dom";
import { notice } from "../view";

export function showLogin(root: HTMLElement, error: string | undefined, signIn: (token: string) => void): void {
  const input = h("input", {
    id: "token",
    type: "password",
    class: "input",
    autocomplete: "off",
    spellcheck: "false",
    "aria-describedby": "token-hint",
    "aria-invalid": error ? "true" : false,
  });
  const submit = (event: Event) => {
    event.preventDefault();
    const token = input.value.trim();
    if (token) signIn(token);
    else input.focus();
  };
  fill(
    root,
    h(
      "main",
      { id: "main", class: "main main--narrow", tabindex: "-1" },
      h("h1", null, "Sign in to kk-etcd-mcp"),
      error ? notice("error", error) : null,
      h(
        "form",
        { class: "form", "aria-label": "Sign in", on: { submit } },
        h(
          "div",
          { class: "field" },
          h("label", { for: "token" }, "Bearer token"),
          h(
            "p",
            { class: "hint", id: "token-hint" },
            "One of the server's tokens (http_token or http_tokens). It decides what you may see and do, and " +
              "its name is recorded in the audit trail. It is kept in this browser tab only, until you sign out.",
          ),
          input,
        ),
        h("button", { type: "submit", class: "button button--primary" }, "Sign in"),
      ),
    ),
  );
  input.focus();
}

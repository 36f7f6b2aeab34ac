/**
 * The Confirm/Cancel dialog: a modal <dialog> with the server's question, word for word. One at a
 * time: a second question waits until the first is answered. Escape and Cancel both decline, and
 * Cancel has the focus first, so a stray Enter changes nothing.
 */
import { h } from "./dom";

let queue: Promise<unknown> = Promise.resolve();

export function confirmDialog(question: string, confirmLabel = "Confirm"): Promise<boolean> {
  const answer = queue.then(() => ask(question, confirmLabel));
  queue = answer.catch(() => undefined);
  return answer;
}

function ask(question: string, confirmLabel: string): Promise<boolean> {
  return new Promise((resolve) => {
    const returnFocus = document.activeElement instanceof HTMLElement ? document.activeElement : null;
    const title = h("h2", { id: "confirm-title", class: "dialog__title" }, "Confirm this change");
    const text = h("p", { id: "confirm-question", class: "dialog__question" }, question);
    let answered = false;
    const finish = (value: boolean) => {
      if (answered) return;
      answered = true;
      dialog.close();
      dialog.remove();
      returnFocus?.focus();
      resolve(value);
    };
    const cancel = h(
      "button",
      { type: "button", class: "button button--secondary", on: { click: () => finish(false) } },
      "Cancel",
    );
    const confirm = h(
      "button",
      { type: "button", class: "button button--warning", on: { click: () => finish(true) } },
      confirmLabel,
    );
    const dialog = h(
      "dialog",
      { class: "dialog", "aria-labelledby": "confirm-title", "aria-describedby": "confirm-question" },
      title,
      text,
      h("div", { class: "button-group" }, confirm, cancel),
    );
    dialog.addEventListener("cancel", (event) => {
      event.preventDefault();
      finish(false);
    });
    document.body.appendChild(dialog);
    dialog.showModal();
    cancel.focus();
  });
}

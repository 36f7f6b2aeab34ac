/**
 * A few lines instead of a framework: `h()` builds elements, text always goes in as text (never as
 * HTML, so a key or a value from etcd cannot inject markup), and events are plain listeners.
 */

type Child = Node | string | number | null | undefined | false | Child[];
type Handler = (event: Event) => void;
export type Props = Record<string, string | number | boolean | null | undefined | Handler | Record<string, Handler>>;

let counter = 0;

/** A unique id for label/aria wiring. */
export function uid(prefix = "id"): string {
  counter += 1;
  return `${prefix}-${counter}`;
}

/** `h("button", { class: "button", on: { click } }, "Save")`. Props: attributes (false/null: left out),
 * `on` (listeners), `value`/`checked` (set as properties). */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Props | null = null,
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props ?? {})) {
    if (name === "on") {
      for (const [event, handler] of Object.entries(value as Record<string, Handler>)) {
        element.addEventListener(event, handler);
      }
    } else if (name === "value" || name === "checked") {
      (element as unknown as Record<string, unknown>)[name] = value;
    } else if (value === true) {
      element.setAttribute(name, "");
    } else if (value !== false && value !== null && value !== undefined) {
      element.setAttribute(name, String(value));
    }
  }
  append(element, children);
  return element;
}

export function append(parent: Node, children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(parent, child);
    else parent.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace an element's children. */
export function fill(parent: Element, ...children: Child[]): void {
  parent.replaceChildren();
  append(parent, children);
}

/** Set text only when it changed: live updates then touch only what changed. */
export function setText(node: Element, text: string): void {
  if (node.textContent !== text) node.textContent = text;
}

/** Text for screen readers only. */
export function hidden(text: string): HTMLSpanElement {
  return h("span", { class: "visually-hidden" }, text);
}

/** A field: label, optional hint, the control, and an error line tied to it with aria-describedby. */
export function field(
  label: string,
  control: HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement,
  hint?: string,
): HTMLDivElement {
  const id = control.id || uid("field");
  control.id = id;
  const described: string[] = [];
  const hintNode = hint ? h("p", { class: "hint", id: `${id}-hint` }, hint) : null;
  if (hintNode) described.push(hintNode.id);
  if (described.length) control.setAttribute("aria-describedby", described.join(" "));
  return h("div", { class: "field" }, h("label", { for: id }, label), hintNode, control);
}

/** A button; `variant`: primary (default), secondary, warning. */
export function button(
  label: string,
  onClick: (event: Event) => void,
  variant: "primary" | "secondary" | "warning" = "primary",
  props: Props = {},
): HTMLButtonElement {
  return h("button", { type: "button", class: `button button--${variant}`, ...props, on: { click: onClick } }, label);
}

/** Download text as a file (export). */
export function download(name: string, text: string, type = "application/json"): void {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = h("a", { href: url, download: name, hidden: true });
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

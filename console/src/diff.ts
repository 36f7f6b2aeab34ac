/**
 * A line diff as a real table: old line number, new line number, and the line, marked added or
 * removed in words (for screen readers) as well as by colour and sign.
 */
import { diffLines } from "diff";
import { h, hidden } from "./dom";

export interface DiffSides {
  before: string;
  after: string;
  beforeLabel: string;
  afterLabel: string;
  caption: string;
}

export function renderDiff(sides: DiffSides): HTMLElement {
  const rows: HTMLTableRowElement[] = [];
  let oldLine = 1;
  let newLine = 1;
  let changed = 0;
  for (const part of diffLines(sides.before, sides.after)) {
    const lines = part.value.replace(/\n$/, "").split("\n");
    for (const line of lines) {
      if (part.added) {
        changed += 1;
        rows.push(row("added", "", String(newLine++), "+", line));
      } else if (part.removed) {
        changed += 1;
        rows.push(row("removed", String(oldLine++), "", "−", line));
      } else {
        rows.push(row("same", String(oldLine++), String(newLine++), "", line));
      }
    }
  }
  const summary = changed === 0 ? "No differences." : `${changed} line${changed === 1 ? "" : "s"} differ.`;
  return h(
    "div",
    { class: "diff" },
    h("p", { class: "diff__summary" }, summary),
    h(
      "div",
      { class: "table-scroll" },
      h(
        "table",
        { class: "table diff__table" },
        h("caption", null, sides.caption),
        h(
          "thead",
          null,
          h(
            "tr",
            null,
            h("th", { scope: "col", class: "diff__num" }, sides.beforeLabel),
            h("th", { scope: "col", class: "diff__num" }, sides.afterLabel),
            h("th", { scope: "col", class: "diff__sign" }, hidden("Change")),
            h("th", { scope: "col" }, "Line"),
          ),
        ),
        h("tbody", null, rows),
      ),
    ),
  );
}

function row(kind: "added" | "removed" | "same", oldNo: string, newNo: string, sign: string, text: string) {
  const word = kind === "same" ? "" : kind;
  return h(
    "tr",
    { class: `diff__row diff__row--${kind}` },
    h("td", { class: "diff__num" }, oldNo),
    h("td", { class: "diff__num" }, newNo),
    h("td", { class: "diff__sign" }, h("span", { "aria-hidden": "true" }, sign), word ? hidden(word) : null),
    h("td", { class: "diff__text" }, h("code", null, text)),
  );
}

/**
 * The review of a proposed value (kv_put, usually with dry_run=true): the key's current value beside the
 * proposed one and their diff, what is wrong with the proposal (the parser's line and column, and the
 * server's own sentence), and, for a dry run, Save: kv_put with expected_revision, so a value changed
 * since the review is not overwritten. Shown as an MCP App beside kv_put's result.
 */
import { renderDiff } from "../diff";
import { button, fill, h } from "../dom";
import { type ValueFormat, describeProblem, pretty, validate } from "../format";
import { ToolError } from "../transport";
import { type ViewContext, errorText, notice, noticeArea, runChange } from "../view";

/** A tool call as the host reports it: its arguments and (structurally) its result. */
export interface PutCall {
  arguments: Record<string, unknown>;
  result?: {
    isError?: boolean;
    content?: { type: string; text?: string }[];
    structuredContent?: unknown;
  };
}

interface KvPutResult {
  key: string;
  revision: number;
  created: boolean;
  previous_mod_revision: number | null;
  dry_run: boolean;
  change: string;
}

interface KvEntry {
  value: string;
  format: ValueFormat;
  encoding: "utf-8" | "base64";
  mod_revision: number;
}

const FORMATS: ValueFormat[] = ["text", "json", "yaml"];

export function mountReview(root: HTMLElement, ctx: ViewContext, call: PutCall): () => void {
  const key = String(call.arguments.key ?? "");
  const format: ValueFormat = FORMATS.includes(call.arguments.format as ValueFormat)
    ? (call.arguments.format as ValueFormat)
    : "text";
  const proposed = asText(call.arguments.value, format);
  const refused = call.result?.isError
    ? (call.result.content ?? [])
        .map((part) => part.text ?? "")
        .join(" ")
        .trim() || "kv_put failed"
    : null;
  const outcome = refused === null ? (call.result?.structuredContent as KvPutResult | undefined) : undefined;
  const messages = noticeArea();
  const sides = h("div", { class: "review" }, h("p", { class: "view-summary", role: "status" }, "Loading…"));
  const problem = validate(proposed, format);

  const status = refused
    ? notice("error", h("p", null, `The server refused this value: ${refused}`))
    : outcome?.dry_run
      ? notice("info", h("p", null, `Proposed, not written yet: ${outcome.change}.`))
      : outcome
        ? notice("success", h("p", null, `Written at revision ${outcome.revision}: ${outcome.change}.`))
        : null;
  const validity =
    format === "text"
      ? null
      : problem
        ? h(
            "div",
            { class: "review__problem", role: "alert" },
            h("h2", null, `Not valid ${format}`),
            h("p", { class: "field-message field-message--error" }, describeProblem(problem)),
          )
        : h("p", { class: "field-message field-message--ok" }, `Valid ${format}.`);

  fill(root, h("h1", null, "Review: ", h("span", { class: "mono" }, key)), status, validity, messages.element, sides);

  const compare = (current: KvEntry | null, label: string, writable: boolean) => {
    const before = current ? pretty(current.value, current.format) : "";
    const after = problem ? proposed : pretty(proposed, format);
    const save =
      writable && ctx.can("kv_put") && !problem
        ? button(
            "Save this value",
            () =>
              void runChange(
                ctx,
                messages,
                () =>
                  ctx.transport.callTool<KvPutResult>("kv_put", {
                    key,
                    value: proposed,
                    format,
                    expected_revision: current?.mod_revision ?? 0,
                  }),
                (r) => `Saved ${key} at revision ${r.revision}.`,
              ).then((done) => {
                if (done) save?.remove();
              }),
            "primary",
          )
        : null;
    fill(
      sides,
      h(
        "div",
        { class: "review__sides" },
        h(
          "section",
          { "aria-labelledby": "current-heading" },
          h("h2", { id: "current-heading" }, label),
          current
            ? h("pre", { class: "value", tabindex: "0", "aria-label": label }, before)
            : h("p", null, "The key does not exist."),
        ),
        h(
          "section",
          { "aria-labelledby": "proposed-heading" },
          h("h2", { id: "proposed-heading" }, writable ? "Proposed value" : "Written value"),
          h("pre", { class: "value", tabindex: "0", "aria-label": "Proposed value" }, after),
        ),
      ),
      h("h2", null, "Changes"),
      renderDiff({
        before,
        after,
        beforeLabel: label,
        afterLabel: "Proposed",
        caption: `Changes to ${key}`,
      }),
      save ? h("div", { class: "button-group" }, save) : null,
    );
  };

  void (async () => {
    try {
      if (outcome && !outcome.dry_run) {
        // Written already: compare with the value it replaced.
        const previous = outcome.previous_mod_revision ? await read(ctx, key, outcome.previous_mod_revision) : null;
        compare(previous, previous ? `Before (revision ${previous.mod_revision})` : "Before", false);
      } else {
        const current = await read(ctx, key, 0);
        compare(current, current ? `Current value (revision ${current.mod_revision})` : "Current value", true);
      }
    } catch (error) {
      fill(sides, notice("error", errorText(error)));
    }
  })();
  return () => undefined;
}

/** The key at `revision` (0: now), or null when it does not exist. */
async function read(ctx: ViewContext, key: string, revision: number): Promise<KvEntry | null> {
  try {
    const entry = await ctx.transport.callTool<KvEntry>("kv_get", revision ? { key, revision } : { key });
    return entry.encoding === "base64" ? { ...entry, value: "(binary)", format: "text" } : entry;
  } catch (error) {
    if (error instanceof ToolError && /not found|does not exist|no such key/i.test(error.message)) return null;
    throw error;
  }
}

/** The value as kv_put stores it: a string as given; an object or list as JSON text; a number or boolean as JSON. */
function asText(value: unknown, format: ValueFormat): string {
  if (typeof value === "string") return value;
  if (value !== null && typeof value === "object") return JSON.stringify(value, null, format === "json" ? 2 : 0);
  return JSON.stringify(value ?? "");
}

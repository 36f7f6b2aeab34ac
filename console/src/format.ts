/**
 * Configuration values as the editor sees them: validate json/yaml as the person types (the parser's
 * own message, with line and column), and pretty-print a stored value for reading. The server checks
 * again when saving; this is so that a mistake shows where it is before anything is sent.
 */
import { YAML11_SCHEMA, YAMLException, dump, load } from "js-yaml";

export type ValueFormat = "text" | "json" | "yaml";

export interface Problem {
  line: number; // 1-based
  column: number; // 1-based
  message: string;
}

/** The first problem in `text` read as `format`; null when it parses (text always does). */
export function validate(text: string, format: ValueFormat): Problem | null {
  if (format === "json") return jsonProblem(text);
  if (format === "yaml") return yamlProblem(text);
  return null;
}

function jsonProblem(text: string): Problem | null {
  try {
    JSON.parse(text);
    return null;
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const at = /at position (\d+)/.exec(message);
    const offset = at ? Number(at[1]) : text.length;
    const { line, column } = lineColumn(text, offset);
    const reason = message.replace(/\s*(in JSON )?at position \d+.*$/s, "").replace(/^JSON\.parse: /, "");
    return { line, column, message: reason || "not valid JSON" };
  }
}

function yamlProblem(text: string): Problem | null {
  try {
    // YAML 1.1, as the server's PyYAML reads it (yes/no are booleans there too).
    load(text, { schema: YAML11_SCHEMA });
    return null;
  } catch (error) {
    if (error instanceof YAMLException && error.mark) {
      return { line: error.mark.line + 1, column: error.mark.column + 1, message: error.reason };
    }
    return { line: 1, column: 1, message: error instanceof Error ? error.message : String(error) };
  }
}

/** 1-based line and column of a character offset. */
export function lineColumn(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, Math.max(0, Math.min(offset, text.length)));
  const lines = before.split("\n");
  return { line: lines.length, column: lines[lines.length - 1].length + 1 };
}

export function describeProblem(problem: Problem): string {
  return `Line ${problem.line}, column ${problem.column}: ${problem.message}`;
}

/** A stored value laid out for reading: json indented, yaml re-emitted block style; text as it is. */
export function pretty(value: string, format: ValueFormat): string {
  try {
    if (format === "json") return JSON.stringify(JSON.parse(value), null, 2);
    if (format === "yaml") return dump(load(value, { schema: YAML11_SCHEMA }), { schema: YAML11_SCHEMA });
  } catch {
    // shown as stored
  }
  return value;
}

/**
 * The key tree, one level at a time, from kv_list pages: keys under a prefix grouped by their next
 * `/` segment. A folder is listed once, then the listing skips past all of its keys (a kv_list
 * cursor is the base64url of the key a page starts at), so a level with a few folders of 100,000 keys
 * each still takes a few requests; a level of many keys is read a page at a time ("Show more").
 */
import type { ConsoleTransport } from "./transport";

export interface KeyEntry {
  kind: "folder" | "key";
  name: string; // the part after the level's prefix
  path: string; // the whole key (or the folder's prefix, ending in '/')
  mod_revision?: number;
  version?: number;
}

export interface LevelPage {
  entries: KeyEntry[];
  next: string | null; // cursor of the rest of this level; null at its end
}

interface KvListResult {
  items: { key: string; mod_revision: number; version: number }[];
  next_cursor: string | null;
}

const PAGE_KEYS = 200;
const WANTED_ENTRIES = 100;
const MAX_REQUESTS = 20; // per "Show more": a level of many folders fills in over a few clicks

export async function listLevel(
  transport: ConsoleTransport,
  prefix: string,
  cursor: string | null,
): Promise<LevelPage> {
  const entries: KeyEntry[] = [];
  let next = cursor;
  for (let requests = 0; requests < MAX_REQUESTS && entries.length < WANTED_ENTRIES; requests += 1) {
    const args: Record<string, unknown> = { prefix, limit: PAGE_KEYS, keys_only: true };
    if (next) args.cursor = next;
    const page = await transport.callTool<KvListResult>("kv_list", args);
    let lastFolder: string | null = null;
    for (const item of page.items) {
      const rest = item.key.slice(prefix.length);
      const slash = rest.indexOf("/");
      if (slash >= 0) {
        const folder = prefix + rest.slice(0, slash + 1);
        if (entries.at(-1)?.path !== folder)
          entries.push({ kind: "folder", name: rest.slice(0, slash + 1), path: folder });
        lastFolder = folder;
      } else {
        entries.push({
          kind: "key",
          name: rest,
          path: item.key,
          mod_revision: item.mod_revision,
          version: item.version,
        });
        lastFolder = null;
      }
    }
    if (!page.next_cursor) return { entries, next: null };
    next = lastFolder ? cursorAt(folderEnd(lastFolder)) : page.next_cursor;
  }
  return { entries, next };
}

/** The first key after every key of a folder: its final '/' becomes the next character, '0'. */
export function folderEnd(folder: string): string {
  return `${folder.slice(0, -1)}0`;
}

/** A kv_list cursor that starts a listing at `key`: base64url of its UTF-8 bytes. */
export function cursorAt(key: string): string {
  let binary = "";
  for (const byte of new TextEncoder().encode(key)) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_");
}

/** The folders above a key or prefix, outermost first: "app/db/url" -> ["app/", "app/db/"]. */
export function ancestors(path: string): string[] {
  const folders: string[] = [];
  let at = path.indexOf("/");
  while (at >= 0 && at < path.length - 1) {
    folders.push(path.slice(0, at + 1));
    at = path.indexOf("/", at + 1);
  }
  return folders;
}

/** The folder a key lives in ("" at the top). */
export function folderOf(key: string): string {
  const at = key.lastIndexOf("/", key.length - 2);
  return at >= 0 ? key.slice(0, at + 1) : "";
}

/**
 * The thought cache's fold worker: it reads the lines its process appends to its pending logs
 * and inserts them into the SQLite table, on its own thread, so the SQLite work (about a sixth
 * of the main thread's at concurrency 1,024) stays off the thread that sends and reads calls.
 * Started by `src/cache_log.ts`; the messages are {@linkcode ToFolder} and {@linkcode FromFolder}.
 *
 * Requires `--allow-read` and `--allow-write` on the cache's directory (inherited).
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import { insertRows, parseLogLines } from "./cache_fold.ts";

/** What the cache sends its folder. */
export type ToFolder =
  | { readonly type: "start"; readonly dbPath: string; readonly busyTimeoutMs: number }
  /** A new log to read once the ones before it are done. */
  | { readonly type: "segment"; readonly path: string }
  /** The log will not grow past `bytes`. */
  | { readonly type: "seal"; readonly path: string; readonly bytes: number }
  /** Fold everything, then close the database. */
  | { readonly type: "close" };

/** What the folder answers. */
export type FromFolder =
  /** `rows` lines in all are now committed; the `done` logs are folded whole. */
  | { readonly type: "folded"; readonly rows: number; readonly done: readonly string[] }
  | { readonly type: "failed"; readonly message: string }
  | { readonly type: "closed"; readonly rows: number; readonly done: readonly string[] };

interface Segment {
  readonly path: string;
  file: Deno.FsFile | null;
  offset: number;
  sealedAt: number | null;
}

interface WorkerScope {
  onmessage: ((event: MessageEvent<ToFolder>) => void) | null;
  postMessage(message: FromFolder): void;
  close(): void;
}

const scope = globalThis as unknown as WorkerScope;
const decoder = new TextDecoder();
const READ_BYTES = 1024 * 1024;
const LINE_FEED = 0x0a;
/**
 * Folds are this far apart: each commit makes the main thread's connection drop its page cache,
 * and a larger transaction writes fewer pages a row (random keys share index pages).
 */
const FOLD_INTERVAL_MS = 100;

let db: DatabaseSync | null = null;
const segments: Segment[] = [];
let folded = 0;
let failed = false;
let timer: ReturnType<typeof setInterval> | undefined;
const chunk = new Uint8Array(READ_BYTES);

scope.onmessage = (event) => {
  const message = event.data;
  try {
    switch (message.type) {
      case "start":
        db = new DatabaseSync(message.dbPath);
        db.exec(`PRAGMA busy_timeout = ${message.busyTimeoutMs}`);
        db.exec("PRAGMA synchronous = NORMAL");
        timer = setInterval(foldNow, FOLD_INTERVAL_MS);
        return;
      case "segment":
        segments.push({ path: message.path, file: null, offset: 0, sealedAt: null });
        return;
      case "seal": {
        const segment = segments.find((entry) => entry.path === message.path);
        if (segment) segment.sealedAt = message.bytes;
        return;
      }
      case "close": {
        clearInterval(timer);
        const done = failed ? [] : fold();
        for (const segment of segments) segment.file?.close();
        db?.close();
        scope.postMessage({ type: "closed", rows: folded, done });
        scope.close();
        return;
      }
    }
  } catch (error) {
    fail(error);
  }
};

function foldNow(): void {
  if (failed) return;
  try {
    const before = folded;
    const done = fold();
    if (folded > before || done.length > 0) {
      scope.postMessage({ type: "folded", rows: folded, done });
    }
  } catch (error) {
    fail(error);
  }
}

/** The lines stay in their logs, which the next open of the cache folds. */
function fail(error: unknown): void {
  failed = true;
  clearInterval(timer);
  scope.postMessage({
    type: "failed",
    message: error instanceof Error ? error.message : String(error),
  });
}

/** Commits every complete line appended so far; returns the logs now folded whole. */
function fold(): string[] {
  const rows: [string, string][] = [];
  for (const segment of segments) readLines(segment, rows);
  insertRows(db!, rows);
  folded += rows.length;
  const done: string[] = [];
  while (segments.length > 0 && segments[0].offset === segments[0].sealedAt) {
    const segment = segments.shift()!;
    segment.file?.close();
    done.push(segment.path);
  }
  return done;
}

/** Reads `segment` from its offset up to its last complete line. */
function readLines(segment: Segment, rows: [string, string][]): void {
  segment.file ??= Deno.openSync(segment.path, { read: true });
  segment.file.seekSync(segment.offset, Deno.SeekMode.Start);
  for (;;) {
    const read = segment.file.readSync(chunk);
    if (read === null || read === 0) return;
    const last = chunk.lastIndexOf(LINE_FEED, read - 1);
    // A line longer than the chunk: read it whole, then go on.
    if (last === -1) {
      if (!readLongLine(segment, rows)) return;
      continue;
    }
    // A line feed byte never sits inside a multi-byte UTF-8 sequence, so this cut is clean.
    const { rows: parsed } = parseLogLines(decoder.decode(chunk.subarray(0, last + 1)));
    rows.push(...parsed);
    segment.offset += last + 1;
    if (last + 1 < read) segment.file.seekSync(segment.offset, Deno.SeekMode.Start);
  }
}

/** Reads one line longer than the chunk; `false` when its end is not written yet. */
function readLongLine(segment: Segment, rows: [string, string][]): boolean {
  const text = Deno.readFileSync(segment.path).subarray(segment.offset);
  const end = text.indexOf(LINE_FEED);
  if (end === -1) return false;
  const { rows: parsed } = parseLogLines(decoder.decode(text.subarray(0, end + 1)));
  rows.push(...parsed);
  segment.offset += end + 1;
  segment.file!.seekSync(segment.offset, Deno.SeekMode.Start);
  return true;
}

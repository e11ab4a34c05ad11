/**
 * Content-addressed cache of generated thoughts, keyed by everything that determines a
 * generation. It is what makes a rerun after a crash resume for free: only calls that were in
 * flight are paid again.
 *
 * Permissions: {@linkcode openCache} requires `--allow-read` and `--allow-write` on the cache
 * file and its directory.
 *
 * @module
 */

import { createHash, type Hash } from "node:crypto";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { recoverPendingLogs } from "./cache_fold.ts";
import { PendingLog } from "./cache_log.ts";
import { migrate, ThoughtTable } from "./cache_table.ts";
import type { ChatMessage } from "./types.ts";
import { WriteError } from "./write_error.ts";

/** Everything that determines one generation; the inputs of {@linkcode cacheKey}. */
export interface CacheKeyParts {
  /** The model name as sent to the endpoint. */
  readonly model: string;
  /** The exact messages sent, system prompt and few-shot examples included. */
  readonly messages: readonly ChatMessage[];
  /** Sampling temperature; `undefined` when the request leaves it to the server. */
  readonly temperature?: number;
  /** Nucleus sampling; `undefined` when the request leaves it to the server. */
  readonly topP?: number;
  /** Output token cap; `undefined` when the request leaves it to the server. */
  readonly maxTokens?: number;
  /** Identifies the prompt template and its version, so a prompt edit invalidates old entries. */
  readonly promptId: string;
  /** Further request fields (`--extra-body`); none, `null` or `{}` keep the keys made without. */
  readonly extraBody?: Readonly<Record<string, unknown>> | null;
}

/** A key-value store of thoughts by {@linkcode cacheKey}. */
export interface ThoughtCache {
  /** The cached thought for `key`, or `undefined`. */
  get(key: string): string | undefined;
  /**
   * Stores `thought` under `key`, replacing any previous one. `get` sees it at once; it is
   * durable once the returned promise resolves. Rejects with {@linkcode WriteError} when the
   * cache file cannot be written (then or at an earlier write).
   */
  put(key: string, thought: string): Promise<void>;
  /** How many entries the cache holds. */
  readonly size: number;
  /**
   * Releases the underlying resources; the cache must not be used afterwards.
   *
   * @throws {WriteError} When puts could not be written to the file: those the pending log holds
   * are kept in it, for the next open to fold.
   */
  close(): void;
}

/** Thrown by {@linkcode openCache} when the cache file cannot be opened or has a foreign schema. */
export class CacheError extends Error {
  /**
   * @param path The cache file path.
   * @param reason Why it cannot be opened.
   * @param options The underlying error as `cause`, if any.
   */
  constructor(readonly path: string, readonly reason: string, options?: ErrorOptions) {
    super(`Cannot open cache "${path}": ${reason}`, options);
    this.name = "CacheError";
  }
}

/**
 * Bumped when the key serialisation changes, so old entries never match (the table's layout has
 * its own version, in `src/cache_table.ts`).
 */
const KEY_VERSION = "cotfit-cache-key-v1\n";
const BUSY_TIMEOUT_MS = 5000;
/**
 * Pages of a new cache file. Against SQLite's 4 KiB, a commit of a batch writes a quarter as
 * many pages (the index's hashes are random, so a batch dirties pages all over it): measured on
 * 60,000 thoughts, 40 a turn, 12.3 to 12.9 µs a conversation against 15.6 to 16.6 for the first
 * run's gets and puts, 7.2 to 7.7 against 8.2 to 9.8 for a rerun's gets.
 */
const PAGE_BYTES = 16 * 1024;
/** Gets grouped in one read transaction at most; the end of the event-loop turn ends it sooner. */
const MAX_BATCH = 256;
/**
 * How long puts wait in memory (already durable in the pending log) before they are written to
 * SQLite, all in one short transaction. The write lock is held for that transaction only, never
 * across event-loop turns: two runs sharing a file at concurrency 512 each made 13% more calls
 * together than when each held its write transaction open for 50 ms (a process that waits for
 * the lock waits with its event loop stopped). One commit per 50 ms, not per turn, writes each
 * index page once for several rows (5% less CPU at concurrency 1,024); 250 ms, with longer
 * stalls, was 3% slower.
 */
const FLUSH_MS = 50;
/** Thought text (UTF-16 units) waiting in memory past which the puts are written at once. */
const MAX_PENDING_CHARS = 4 * 1024 * 1024;

/**
 * Computes the sha-256 hex key of one generation request.
 *
 * Scalars are newline-separated and every string is length-prefixed, so no two different
 * requests serialise to the same bytes; messages are hashed one by one to avoid building one
 * big string per call.
 *
 * @param parts What determines the generation.
 * @returns 64 lowercase hex characters.
 *
 * @example Same request, same key; any change, another key
 * ```ts
 * import assert from "node:assert/strict";
 * import { cacheKey } from "./cache.ts";
 *
 * const parts = {
 *   model: "m",
 *   promptId: "thought_process@1",
 *   messages: [{ role: "user" as const, content: "Hi" }],
 * };
 * assert.equal(cacheKey(parts), cacheKey({ ...parts }));
 * assert.notEqual(cacheKey(parts), cacheKey({ ...parts, temperature: 0.7 }));
 * assert.match(cacheKey(parts), /^[0-9a-f]{64}$/);
 * ```
 */
export function cacheKey(parts: CacheKeyParts): string {
  const hash = headerHash(parts, parts.messages.length);
  for (const message of parts.messages) hashMessage(hash, message);
  return hash.digest("hex");
}

/**
 * Makes a {@linkcode cacheKey} function for requests that differ only in their messages. It
 * hashes the leading messages once while they stay the same objects (a prompt's system message
 * and few-shot examples, several KB, shared by every request), then only the last one per call:
 * the keys are the same as {@linkcode cacheKey}'s.
 *
 * @param parts Everything but the messages.
 * @returns The key of a request's messages.
 *
 * @example Same keys as cacheKey()
 * ```ts
 * import assert from "node:assert/strict";
 * import { cacheKey, createCacheKeyer } from "./cache.ts";
 *
 * const parts = { model: "m", promptId: "p" };
 * const system = { role: "system" as const, content: "A long system prompt." };
 * const keyOf = createCacheKeyer(parts);
 * for (const content of ["Hi", "Hello"]) {
 *   const messages = [system, { role: "user" as const, content }];
 *   assert.equal(keyOf(messages), cacheKey({ ...parts, messages }));
 * }
 * ```
 */
export function createCacheKeyer(
  parts: Omit<CacheKeyParts, "messages">,
): (messages: readonly ChatMessage[]) => string {
  let leading: readonly ChatMessage[] = [];
  let leadingHash: Hash | null = null;
  return (messages) => {
    const last = messages.length - 1;
    let same = leadingHash !== null && leading.length === last;
    for (let i = 0; same && i < last; i++) same = messages[i] === leading[i];
    if (!same) {
      leading = messages.slice(0, last);
      leadingHash = headerHash(parts, messages.length);
      for (const message of leading) hashMessage(leadingHash, message);
    }
    const hash = leadingHash!.copy();
    if (last >= 0) hashMessage(hash, messages[last]);
    return hash.digest("hex");
  };
}

function headerHash(parts: Omit<CacheKeyParts, "messages">, messageCount: number): Hash {
  const hash = createHash("sha256");
  // `undefined` prints as an empty field, distinct from every number.
  hash.update(
    `${KEY_VERSION}${parts.temperature ?? ""}\n${parts.topP ?? ""}\n${parts.maxTokens ?? ""}\n` +
      `${parts.model.length}:${parts.model}\n${parts.promptId.length}:${parts.promptId}\n`,
  );
  // Only when set, so caches written before it keep their keys; a digit never starts "extra".
  const extra = parts.extraBody ? canonicalJson(parts.extraBody) : "{}";
  if (extra !== "{}") hash.update(`extra ${extra.length}:${extra}\n`);
  hash.update(`${messageCount}\n`);
  return hash;
}

/** JSON with every object's keys sorted, so the same fields in another order are the same key. */
function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, item: unknown) => {
    if (typeof item !== "object" || item === null || Array.isArray(item)) return item;
    const sorted: Record<string, unknown> = {};
    for (const key of Object.keys(item).sort()) {
      sorted[key] = (item as Record<string, unknown>)[key];
    }
    return sorted;
  });
}

function hashMessage(hash: Hash, message: ChatMessage): void {
  // Lengths are in UTF-16 code units; with the role ending at "\n" the stream stays parseable.
  hash.update(`${message.role}\n${message.content.length}:`);
  hash.update(message.content);
}

/**
 * Opens (creating if needed) a SQLite cache file, and its parent directory.
 *
 * A put's promise resolves once the thought is in this process's pending log, a plain file beside
 * the cache (`<file>-pending-<uuid>.log`, the puts queued before the next microtask in one
 * write): from then on a killed process (even `kill -9`) keeps it, and the next open folds the
 * logs that dead processes left. So a call's slot is freed without waiting for a SQLite commit or
 * a WAL checkpoint. `get` answers pending puts from memory; every 50 ms (or past 4 Mi characters
 * of thought) they are written in one transaction, in WAL mode with `synchronous=NORMAL`, which
 * then empties the log; `close()` writes the rest and removes it. A get for a key the table's
 * filter has never seen (see `src/cache_filter.ts`) reads no SQLite; the others share a read
 * transaction per event-loop turn (a transaction of its own cost each get 15 µs, several times
 * the statement). Only a power loss or OS crash may drop the last few entries, which costs a
 * re-generation, not corruption. Several processes may share one file: each sees the others' puts
 * once written (within 50 ms); the write lock is held only while a batch is written, and writers
 * wait up to 5 s for it.
 *
 * Requires `--allow-read` and `--allow-write`.
 *
 * @param path The cache file, e.g. `.cotfit/cache.sqlite`.
 * @returns An open cache; call `close()` when done.
 * @throws {CacheError} When the file cannot be opened, is not a SQLite database or was written
 * by a newer cotfit.
 *
 * @example Round trip through a file
 * ```ts
 * import assert from "node:assert/strict";
 * import { openCache } from "./cache.ts";
 *
 * const dir = await Deno.makeTempDir();
 * const cache = openCache(`${dir}/sub/cache.sqlite`);
 * await cache.put("k", "a thought");
 * assert.equal(cache.get("k"), "a thought");
 * assert.equal(cache.get("missing"), undefined);
 * assert.equal(cache.size, 1);
 * cache.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export function openCache(path: string): ThoughtCache {
  let db: DatabaseSync | undefined;
  let table: ThoughtTable;
  try {
    mkdirSync(dirname(path), { recursive: true });
    db = new DatabaseSync(path);
    db.exec(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
    // Takes effect in a new file only, and only before WAL mode is set.
    db.exec(`PRAGMA page_size = ${PAGE_BYTES}`);
    db.exec("PRAGMA journal_mode = WAL");
    db.exec("PRAGMA synchronous = NORMAL");
    migrate(db);
    table = new ThoughtTable(db);
    recoverPendingLogs(table, path);
  } catch (error) {
    db?.close();
    if (error instanceof CacheError) throw error;
    throw new CacheError(path, error instanceof Error ? error.message : String(error), {
      cause: error,
    });
  }
  return new SqliteCache(db, table, path);
}

/** The gets of one open read transaction. */
interface ReadBatch {
  size: number;
  readonly timer: ReturnType<typeof setTimeout>;
}

class SqliteCache implements ThoughtCache {
  readonly #db: DatabaseSync;
  readonly #path: string;
  readonly #table: ThoughtTable;
  readonly #count: StatementSync;
  readonly #log: PendingLog;
  /** A read transaction takes no lock: other processes keep writing meanwhile. */
  #reads: ReadBatch | null = null;
  /** Whether the table learnt other processes' rows in this event-loop turn. */
  #synced = false;
  /** Puts not yet in SQLite, by key: in the pending log, and answered by `get` from here. */
  readonly #pending = new Map<string, string>();
  #pendingChars = 0;
  #flushTimer: ReturnType<typeof setTimeout> | null = null;
  /** A failed write: its rows stay in the log and in memory, and later puts are refused. */
  #failure: WriteError | null = null;

  constructor(db: DatabaseSync, table: ThoughtTable, path: string) {
    this.#db = db;
    this.#path = path;
    this.#table = table;
    this.#count = db.prepare("SELECT count(*) AS n FROM thoughts");
    this.#log = new PendingLog(path);
  }

  get(key: string): string | undefined {
    const pending = this.#pending.get(key);
    if (pending !== undefined) return pending;
    if (!this.#synced) this.#syncTable();
    // Every get of a first run ends here: no lookup, no read transaction.
    if (!this.#table.mayHold(key)) return undefined;
    const reads = this.#reads ?? this.#beginReads();
    const thought = this.#table.find(key);
    if (++reads.size >= MAX_BATCH) this.#endReads();
    return thought;
  }

  put(key: string, thought: string): Promise<void> {
    if (this.#failure) return Promise.reject(this.#failure);
    try {
      const replaced = this.#pending.get(key);
      this.#pending.set(key, thought);
      this.#pendingChars += thought.length - (replaced?.length ?? 0);
      const logged = this.#log.append(key, thought);
      if (this.#pendingChars >= MAX_PENDING_CHARS) this.#flush();
      else this.#flushTimer ??= setTimeout(() => this.#flush(), FLUSH_MS);
      return logged;
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** Lets the table learn other processes' rows, once an event-loop turn. */
  #syncTable(): void {
    this.#table.sync();
    this.#synced = true;
    setTimeout(() => this.#synced = false, 0);
  }

  #beginReads(): ReadBatch {
    this.#db.exec("BEGIN");
    const reads = { size: 0, timer: setTimeout(() => this.#endReads(), 0) };
    this.#reads = reads;
    return reads;
  }

  #endReads(): void {
    const reads = this.#reads;
    if (reads === null) return;
    this.#reads = null;
    clearTimeout(reads.timer);
    try {
      this.#db.exec("COMMIT");
    } catch {
      // Nothing was written in it: dropping the snapshot is all that is left to do.
      if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
    }
  }

  /** Writes the pending puts in one transaction, then empties the log of them. */
  #flush(): void {
    if (this.#flushTimer !== null) clearTimeout(this.#flushTimer);
    this.#flushTimer = null;
    if (this.#pending.size === 0 || this.#failure) return;
    try {
      // A read transaction is not upgraded: in WAL mode that fails if another process wrote.
      this.#endReads();
      this.#table.writeAll(this.#pending);
      // Lines still queued for the log are written after this; they are committed duplicates.
      this.#log.clear();
      this.#pending.clear();
      this.#pendingChars = 0;
    } catch (error) {
      // Usually from a timer, with no caller to tell: the next put, or close(), says it.
      this.#failure = new WriteError(`cache "${this.#path}"`, error);
    }
  }

  /** Counts rows: linear in the table size, meant for summaries, not hot paths. */
  get size(): number {
    this.#flush();
    return Number(this.#count.get()?.n ?? 0);
  }

  close(): void {
    if (!this.#db.isOpen) return;
    this.#flush();
    this.#endReads();
    try {
      this.#log.close(this.#failure === null);
    } finally {
      this.#db.close();
    }
    // Thrown only now, so the file is closed either way.
    if (this.#failure) throw this.#failure;
  }
}

/** Options of {@linkcode memoryCache}. */
export interface MemoryCacheOptions {
  /**
   * Entries kept; past it the oldest go first, so a server or a `--no-cache` run over a huge
   * input stays in flat memory.
   *
   * @default {20_000}
   */
  maxEntries?: number;
  /**
   * Thought text kept, in UTF-16 units (keys count 64 each); past it the oldest go first, so
   * long thoughts cannot make the entry bound a large one. The default keeps about a thousand
   * typical thoughts: enough for repeats within a run or a resent body's recent records (a
   * `--cache` file is for the rest) and, measured, 15 to 25 MB less peak RSS than 4 Mi on a
   * server's long upload.
   *
   * @default {1 Mi: 1 to 2 MB of strings}
   */
  maxChars?: number;
}

/**
 * An in-memory cache: dedupes identical requests within one run (`--no-cache`) or one server's
 * life, for the most recent thoughts within `maxEntries` and `maxChars`, and serves tests.
 *
 * @param options The size bounds.
 * @returns An empty cache backed by a `Map`.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { memoryCache } from "./cache.ts";
 *
 * const cache = memoryCache({ maxEntries: 2 });
 * await cache.put("a", "t1");
 * await cache.put("b", "t2");
 * await cache.put("c", "t3");
 * assert.equal(cache.get("a"), undefined);
 * assert.equal(cache.get("c"), "t3");
 * assert.equal(cache.size, 2);
 * ```
 */
export function memoryCache(options: MemoryCacheOptions = {}): ThoughtCache {
  const { maxEntries = 20_000, maxChars = 1024 * 1024 } = options;
  for (const [name, value] of [["maxEntries", maxEntries], ["maxChars", maxChars]] as const) {
    if (!Number.isInteger(value) || value < 1) {
      throw new RangeError(`Cannot use ${name} ${value}: expected a positive integer`);
    }
  }
  const entries = new Map<string, string>();
  let chars = 0;
  const weight = (key: string, thought: string) => key.length + thought.length;
  const remove = (key: string) => {
    const thought = entries.get(key);
    if (thought === undefined) return;
    entries.delete(key);
    chars -= weight(key, thought);
  };
  return {
    get: (key) => entries.get(key),
    put(key, thought) {
      // Removed first so a replaced entry counts as the newest.
      remove(key);
      entries.set(key, thought);
      chars += weight(key, thought);
      while (entries.size > maxEntries || (chars > maxChars && entries.size > 1)) {
        remove(entries.keys().next().value!);
      }
      return Promise.resolve();
    },
    get size() {
      return entries.size;
    },
    close() {
      entries.clear();
      chars = 0;
    },
  };
}

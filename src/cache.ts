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

import { createHash } from "node:crypto";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { DatabaseSync, type StatementSync } from "node:sqlite";
import type { ChatMessage } from "./types.ts";

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
}

/** A key-value store of thoughts by {@linkcode cacheKey}. */
export interface ThoughtCache {
  /** The cached thought for `key`, or `undefined`. */
  get(key: string): string | undefined;
  /** Stores `thought` under `key`, replacing any previous one; durable once it returns. */
  put(key: string, thought: string): void;
  /** How many entries the cache holds. */
  readonly size: number;
  /** Releases the underlying resources; the cache must not be used afterwards. */
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

/** Bumped when the key serialisation or the table layout changes, so old entries never match. */
const KEY_VERSION = "cotfit-cache-key-v1\n";
const SCHEMA_VERSION = 1;
const BUSY_TIMEOUT_MS = 5000;

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
  const hash = createHash("sha256");
  // `undefined` prints as an empty field, distinct from every number.
  hash.update(
    `${KEY_VERSION}${parts.temperature ?? ""}\n${parts.topP ?? ""}\n${parts.maxTokens ?? ""}\n` +
      `${parts.model.length}:${parts.model}\n${parts.promptId.length}:${parts.promptId}\n` +
      `${parts.messages.length}\n`,
  );
  for (const message of parts.messages) {
    // Lengths are in UTF-16 code units; with the role ending at "\n" the stream stays parseable.
    hash.update(`${message.role}\n${message.content.length}:`);
    hash.update(message.content);
  }
  return hash.digest("hex");
}

/**
 * Opens (creating if needed) a SQLite cache file, and its parent directory.
 *
 * Each `put` is its own transaction in WAL mode with `synchronous=NORMAL`: the row is in the
 * WAL file before `put` returns, so a killed process (even `kill -9`) keeps it; only a power
 * loss or OS crash may drop the last few entries, which costs a re-generation, not corruption.
 * Several processes may share one file: writers wait up to 5 s for the lock.
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
 * cache.put("k", "a thought");
 * assert.equal(cache.get("k"), "a thought");
 * assert.equal(cache.get("missing"), undefined);
 * assert.equal(cache.size, 1);
 * cache.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export function openCache(path: string): ThoughtCache {
  let db: DatabaseSync | undefined;
  try {
    mkdirSync(dirname(path), { recursive: true });
    db = new DatabaseSync(path);
    db.exec(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
    db.exec("PRAGMA journal_mode = WAL");
    db.exec("PRAGMA synchronous = NORMAL");
    migrate(db, path);
  } catch (error) {
    db?.close();
    if (error instanceof CacheError) throw error;
    throw new CacheError(path, error instanceof Error ? error.message : String(error), {
      cause: error,
    });
  }
  return new SqliteCache(db);
}

function migrate(db: DatabaseSync, path: string): void {
  const row = db.prepare("PRAGMA user_version").get();
  const version = Number(row?.user_version ?? 0);
  if (version === SCHEMA_VERSION) return;
  if (version !== 0) {
    throw new CacheError(
      path,
      `schema version ${version} is not ${SCHEMA_VERSION}; use another cache file`,
    );
  }
  db.exec(`
    BEGIN;
    CREATE TABLE IF NOT EXISTS thoughts (
      key TEXT PRIMARY KEY,
      thought TEXT NOT NULL,
      created_at INTEGER
    );
    PRAGMA user_version = ${SCHEMA_VERSION};
    COMMIT;
  `);
}

class SqliteCache implements ThoughtCache {
  readonly #db: DatabaseSync;
  readonly #select: StatementSync;
  readonly #insert: StatementSync;
  readonly #count: StatementSync;

  constructor(db: DatabaseSync) {
    this.#db = db;
    this.#select = db.prepare("SELECT thought FROM thoughts WHERE key = ?");
    // created_at is Unix seconds from SQLite's clock, so no clock is read on this side.
    this.#insert = db.prepare(
      "INSERT OR REPLACE INTO thoughts (key, thought, created_at) VALUES (?, ?, unixepoch())",
    );
    this.#count = db.prepare("SELECT count(*) AS n FROM thoughts");
  }

  get(key: string): string | undefined {
    const thought = this.#select.get(key)?.thought;
    return typeof thought === "string" ? thought : undefined;
  }

  put(key: string, thought: string): void {
    this.#insert.run(key, thought);
  }

  /** Counts rows: linear in the table size, meant for summaries, not hot paths. */
  get size(): number {
    return Number(this.#count.get()?.n ?? 0);
  }

  close(): void {
    if (this.#db.isOpen) this.#db.close();
  }
}

/**
 * An in-memory cache: dedupes identical requests within one run (`--no-cache`) and serves
 * tests.
 *
 * @returns An empty cache backed by a `Map`.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { memoryCache } from "./cache.ts";
 *
 * const cache = memoryCache();
 * cache.put("k", "t");
 * assert.equal(cache.get("k"), "t");
 * assert.equal(cache.size, 1);
 * ```
 */
export function memoryCache(): ThoughtCache {
  const entries = new Map<string, string>();
  return {
    get: (key) => entries.get(key),
    put: (key, thought) => void entries.set(key, thought),
    get size() {
      return entries.size;
    },
    close: () => entries.clear(),
  };
}

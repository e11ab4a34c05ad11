/**
 * The thought cache's SQLite table: its layout, the migration from older layouts, and the
 * statements that find and write a thought, shared by the cache's puts and the recovery of
 * pending logs.
 *
 * @module
 */

import type { DatabaseSync, StatementSync } from "node:sqlite";
import { KeyHashFilter } from "./cache_filter.ts";

/** `PRAGMA user_version` of the layout below. Version 1 keyed the table by the 64-character key. */
export const SCHEMA_VERSION = 2;

/**
 * Rows are appended in rowid order and indexed by a 32-bit hash of their key, not by the key
 * itself: the index's pages hold about 250 entries instead of 55, so a batch of writes dirties
 * (and each commit rewrites) far fewer of them. Measured on 60,000 rows written 250 a commit:
 * 16 against 39 µs a row written, 1.1 against 5.7 µs a lookup. A hash shared by two keys costs
 * one more row compared.
 */
const CREATE_TABLE = `
  CREATE TABLE thoughts (
    id INTEGER PRIMARY KEY,
    key_hash INTEGER NOT NULL,
    key TEXT NOT NULL,
    thought TEXT NOT NULL,
    created_at INTEGER
  );
  CREATE INDEX thoughts_by_key_hash ON thoughts (key_hash);
`;

/**
 * Brings the database to {@linkcode SCHEMA_VERSION}: creates the table in a new file, or rewrites
 * a version 1 table in place (every row kept), in one transaction.
 *
 * @param db An open database.
 * @throws {Error} When the file was written with a layout this version does not know.
 */
export function migrate(db: DatabaseSync): void {
  const row = db.prepare("PRAGMA user_version").get();
  const version = Number(row?.user_version ?? 0);
  if (version === SCHEMA_VERSION) return;
  if (version !== 0 && version !== 1) {
    throw new Error(`schema version ${version} is not ${SCHEMA_VERSION}; use another cache file`);
  }
  inWriteTransaction(db, () => {
    // Read again under the write lock: another process may have migrated meanwhile.
    const current = Number(db.prepare("PRAGMA user_version").get()?.user_version ?? 0);
    if (current === 0) db.exec(CREATE_TABLE);
    else if (current === 1) rewriteVersion1(db);
    db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`);
  });
}

/** Runs `work` in one write transaction: committed when it returns, rolled back when it throws. */
function inWriteTransaction(db: DatabaseSync, work: () => void): void {
  db.exec("BEGIN IMMEDIATE");
  try {
    work();
    db.exec("COMMIT");
  } catch (error) {
    if (db.isTransaction) db.exec("ROLLBACK");
    throw error;
  }
}

function rewriteVersion1(db: DatabaseSync): void {
  db.exec("ALTER TABLE thoughts RENAME TO thoughts_v1");
  db.exec(CREATE_TABLE);
  const insert = db.prepare(
    "INSERT INTO thoughts (key_hash, key, thought, created_at) VALUES (?, ?, ?, ?)",
  );
  const rows = db.prepare("SELECT key, thought, created_at FROM thoughts_v1 ORDER BY rowid");
  for (const { key, thought, created_at } of rows.iterate()) {
    insert.run(
      keyHash(String(key)),
      String(key),
      thought as string | Uint8Array,
      created_at as number | null,
    );
  }
  db.exec("DROP TABLE thoughts_v1");
}

/**
 * FNV-1a over the key's UTF-16 code units: the index's 32-bit key.
 *
 * @param key A cache key.
 * @returns A signed 32-bit integer.
 */
export function keyHash(key: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) hash = Math.imul(hash ^ key.charCodeAt(i), 0x01000193);
  return hash;
}

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder();

/**
 * Finds and writes thoughts in the table, with statements prepared once, and keeps a filter of
 * the key hashes it may hold: a get for a key never generated (every get of a first run) then
 * costs no SQLite lookup, and the write of a new row no delete. The filter is filled from the
 * index at construction (0.2 to 0.4 s for a million rows) and learns the rows of other
 * connections from `sync()`, by rowid order, the order this module writes them in.
 */
export class ThoughtTable {
  readonly #db: DatabaseSync;
  readonly #select: StatementSync;
  readonly #delete: StatementSync;
  readonly #insert: StatementSync;
  readonly #dataVersion: StatementSync;
  readonly #rowsAfter: StatementSync;
  readonly #filter: KeyHashFilter;
  /** The largest rowid the filter has learnt. */
  #lastId: number;
  /** `PRAGMA data_version` when the filter last learnt: it moves when another connection commits. */
  #version: number;

  /** @param db An open database at {@linkcode SCHEMA_VERSION}. */
  constructor(db: DatabaseSync) {
    this.#db = db;
    this.#select = db.prepare(
      "SELECT thought FROM thoughts WHERE key_hash = ? AND key = ? LIMIT 1",
    );
    this.#delete = db.prepare("DELETE FROM thoughts WHERE key_hash = ? AND key = ?");
    // created_at is Unix seconds from SQLite's clock, so no clock is read on this side.
    this.#insert = db.prepare(
      "INSERT INTO thoughts (key_hash, key, thought, created_at) VALUES (?, ?, ?, unixepoch())",
    );
    this.#dataVersion = db.prepare("PRAGMA data_version");
    this.#rowsAfter = db.prepare("SELECT id, key_hash FROM thoughts WHERE id > ? ORDER BY id");
    // One snapshot for the rowid, the version and the hashes, so sync() misses no row.
    db.exec("BEGIN");
    try {
      this.#lastId = Number(db.prepare("SELECT max(id) AS id FROM thoughts").get()?.id ?? 0);
      this.#version = this.#readVersion();
      this.#filter = KeyHashFilter.sizedFor(this.#lastId);
      this.#learnIndex();
    } finally {
      db.exec("COMMIT");
    }
  }

  /**
   * Learns the rows other connections committed since the last call (one statement when none
   * did). The caller decides how fresh `mayHold` must be: once per event-loop turn, and inside
   * every write transaction.
   */
  sync(): void {
    const version = this.#readVersion();
    if (version === this.#version) return;
    this.#version = version;
    for (const row of this.#rowsAfter.iterate(this.#lastId)) {
      this.#filter.add(Number(row.key_hash));
      this.#lastId = Number(row.id);
    }
  }

  /**
   * Whether the table may hold `key`, as of the last `sync()` and this connection's writes.
   *
   * @param key A cache key.
   * @returns `false` when it certainly does not: {@linkcode find} would find nothing.
   */
  mayHold(key: string): boolean {
    return this.#filter.mayHold(keyHash(key));
  }

  /**
   * The thought stored under `key`.
   *
   * @param key A cache key.
   * @returns The thought, or `undefined`.
   */
  find(key: string): string | undefined {
    const thought = this.#select.get(keyHash(key), key)?.thought;
    if (typeof thought === "string") return thought;
    return thought instanceof Uint8Array ? utf8Decoder.decode(thought) : undefined;
  }

  /**
   * Stores every row in one write transaction, each replacing the older thought of its key; on
   * failure none is stored and the error is rethrown.
   *
   * @param rows Keys and thoughts.
   */
  writeAll(rows: Iterable<readonly [string, string]>): void {
    let lastId = this.#lastId;
    inWriteTransaction(this.#db, () => {
      // Under the write lock the filter learns every committed row: its "no" below is exact.
      this.sync();
      lastId = this.#lastId;
      for (const [key, thought] of rows) lastId = this.#write(key, thought);
    });
    // Only once committed: rowids of a rolled-back write may be taken by another connection.
    this.#lastId = lastId;
  }

  /** Writes one row and returns its rowid. */
  #write(key: string, thought: string): number {
    const hash = keyHash(key);
    if (this.#filter.mayHold(hash)) this.#delete.run(hash, key);
    // Bound as text, SQLite would keep a thought only up to a NUL: such a thought goes in as
    // UTF-8 bytes, a blob, which `find` decodes.
    const { lastInsertRowid } = this.#insert.run(
      hash,
      key,
      thought.includes("\0") ? utf8Encoder.encode(thought) : thought,
    );
    this.#filter.add(hash);
    return Number(lastInsertRowid);
  }

  #readVersion(): number {
    return Number(this.#dataVersion.get()?.data_version);
  }

  /**
   * Adds every hash of the index, a slice of the hash range at a time: each crosses into
   * JavaScript as one string, not as a row object each (1 to 2.4 s for a million rows).
   */
  #learnIndex(): void {
    const slice = this.#db.prepare(
      "SELECT group_concat(key_hash) AS hashes FROM thoughts WHERE key_hash BETWEEN ? AND ?",
    );
    const width = 2 ** 28;
    for (let low = -(2 ** 31); low < 2 ** 31; low += width) {
      const hashes = slice.get(low, low + width - 1)?.hashes;
      if (typeof hashes === "string") this.#learnList(hashes);
    }
  }

  /** Adds the hashes of a comma-separated list of integers. */
  #learnList(list: string): void {
    let value = 0;
    let sign = 1;
    for (let i = 0; i <= list.length; i++) {
      const code = i < list.length ? list.charCodeAt(i) : COMMA;
      if (code === COMMA) {
        this.#filter.add(sign * value);
        value = 0;
        sign = 1;
      } else if (code === MINUS) sign = -1;
      else value = value * 10 + code - ZERO;
    }
  }
}

const COMMA = 44;
const MINUS = 45;
const ZERO = 48;

/**
 * The thought cache's write path: a put is appended to this process's pending log (a plain file
 * beside the cache) and is durable once that write returns, within the same event-loop turn; a
 * worker thread folds the log into SQLite afterwards. The call's slot is thus freed without
 * waiting for a SQLite commit, and the commits cost the main thread nothing.
 *
 * Requires `--allow-read` and `--allow-write` on the cache's directory.
 *
 * @module
 */

import type { FromFolder, ToFolder } from "./cache_fold_worker.ts";
import { logLine, pendingLogPath, removeIfPresent } from "./cache_fold.ts";

/** A log is sealed and a new one started past this size, so folded ones can be removed. */
const SEGMENT_BYTES = 8 * 1024 * 1024;

interface Segment {
  readonly path: string;
  readonly file: Deno.FsFile;
  bytes: number;
}

interface Unfolded {
  readonly thought: string;
  /** Its line's number in this log's life, to tell it from a later put of the same key. */
  readonly row: number;
}

/** Appends puts to pending logs and has a worker fold them into the cache file. */
export class PendingLog {
  readonly #cachePath: string;
  readonly #busyTimeoutMs: number;
  #worker: Worker | null = null;
  #segment: Segment | null = null;
  /** Every segment not yet folded whole, the current one last; each holds its lock. */
  readonly #open = new Map<string, Segment>();
  /** Thoughts written but not yet committed, so `get` finds them. */
  readonly #unfolded = new Map<string, Unfolded>();
  #keys: string[] = [];
  #keysHead = 0;
  #rowsWritten = 0;
  #rowsFolded = 0;
  #lines: string[] = [];
  #written: PromiseWithResolvers<void> | null = null;
  #encoded = new Uint8Array(64 * 1024);
  #failure: Error | null = null;
  #closed: PromiseWithResolvers<void> | null = null;

  /**
   * @param cachePath The cache file the logs belong to.
   * @param busyTimeoutMs How long the worker's commits wait for another process's lock.
   */
  constructor(cachePath: string, busyTimeoutMs: number) {
    this.#cachePath = cachePath;
    this.#busyTimeoutMs = busyTimeoutMs;
  }

  /** The thought of a put not yet folded, if any. */
  get(key: string): string | undefined {
    return this.#unfolded.get(key)?.thought;
  }

  /** The keys of the puts not yet folded. */
  keys(): IterableIterator<string> {
    return this.#unfolded.keys();
  }

  /**
   * Appends one put; the lines of one turn's puts are written together, in a microtask.
   *
   * @returns Resolves once the line is written: a killed process's next open folds it.
   */
  append(key: string, thought: string): Promise<void> {
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#closed) return Promise.reject(new Error("Cannot write to a closed cache"));
    const row = this.#rowsWritten + this.#lines.length;
    this.#unfolded.set(key, { thought, row });
    this.#keys.push(key);
    this.#lines.push(logLine(key, thought));
    if (this.#written === null) {
      this.#written = Promise.withResolvers<void>();
      // Every put awaits it, but a failed write must not also crash as an unhandled rejection.
      this.#written.promise.catch(() => {});
      queueMicrotask(() => this.#flush());
    }
    return this.#written.promise;
  }

  #flush(): void {
    const written = this.#written;
    if (written === null) return;
    const lines = this.#lines;
    this.#written = null;
    this.#lines = [];
    try {
      const segment = this.#segment ?? this.#startSegment();
      const bytes = this.#encode(lines);
      let done = 0;
      while (done < bytes.length) done += segment.file.writeSync(bytes.subarray(done));
      segment.bytes += bytes.length;
      this.#rowsWritten += lines.length;
      written.resolve();
      if (segment.bytes >= SEGMENT_BYTES) this.#seal(segment);
    } catch (error) {
      this.#fail(error);
      written.reject(this.#failure);
    }
  }

  #encode(lines: string[]): Uint8Array {
    const text = lines.length === 1 ? lines[0] : lines.join("");
    // At most 3 bytes per UTF-16 code unit.
    if (text.length * 3 > this.#encoded.length) {
      this.#encoded = new Uint8Array(Math.max(text.length * 3, this.#encoded.length * 2));
    }
    const { written } = encoder.encodeInto(text, this.#encoded);
    return this.#encoded.subarray(0, written);
  }

  #startSegment(): Segment {
    const worker = this.#worker ??= this.#startWorker();
    const path = pendingLogPath(this.#cachePath, crypto.randomUUID());
    // Locked under a name no recovery looks at, then renamed: another process opening the cache
    // meanwhile sees the log only once its lock says its writer is alive.
    const staging = `${path}.new`;
    const file = Deno.openSync(staging, { write: true, create: true, append: true });
    try {
      file.lockSync(true);
      Deno.renameSync(staging, path);
    } catch (error) {
      file.close();
      removeIfPresent(staging);
      throw error;
    }
    const segment = { path, file, bytes: 0 };
    this.#segment = segment;
    this.#open.set(path, segment);
    send(worker, { type: "segment", path });
    return segment;
  }

  #seal(segment: Segment): void {
    if (this.#segment === segment) this.#segment = null;
    if (this.#worker) {
      send(this.#worker, { type: "seal", path: segment.path, bytes: segment.bytes });
    }
  }

  #startWorker(): Worker {
    const worker = new Worker(new URL("./cache_fold_worker.ts", import.meta.url), {
      type: "module",
    });
    worker.onmessage = (event: MessageEvent<FromFolder>) => this.#receive(event.data);
    worker.onerror = (event) => {
      event.preventDefault();
      this.#fail(event.error ?? new Error(event.message));
      this.#closed?.resolve();
    };
    send(worker, { type: "start", dbPath: this.#cachePath, busyTimeoutMs: this.#busyTimeoutMs });
    return worker;
  }

  #receive(message: FromFolder): void {
    if (message.type === "failed") {
      this.#fail(new Error(`Cannot write cache "${this.#cachePath}": ${message.message}`));
      this.#closed?.resolve();
      return;
    }
    this.#foldedThrough(message.rows);
    for (const path of message.done) this.#drop(path);
    if (message.type === "closed") this.#closed?.resolve();
  }

  #foldedThrough(rows: number): void {
    while (this.#rowsFolded < rows) {
      const key = this.#keys[this.#keysHead++];
      if (this.#unfolded.get(key)?.row === this.#rowsFolded) this.#unfolded.delete(key);
      this.#rowsFolded++;
    }
    // Compacted now and then rather than shifted per row.
    if (this.#keysHead > 4096 && this.#keysHead * 2 > this.#keys.length) {
      this.#keys = this.#keys.slice(this.#keysHead);
      this.#keysHead = 0;
    }
  }

  /** A log folded whole: removed first, so a crash cannot leave it to be folded again. */
  #drop(path: string): void {
    const segment = this.#open.get(path);
    if (!segment) return;
    this.#open.delete(path);
    removeIfPresent(path);
    segment.file.close();
  }

  #fail(error: unknown): void {
    this.#failure ??= error instanceof Error ? error : new Error(String(error));
  }

  /**
   * Writes what is queued, waits for the worker to fold it all and stops it. Logs it could not
   * fold stay on disk, unlocked, for the next open of the cache to fold.
   */
  async close(): Promise<void> {
    if (this.#closed) return this.#closed.promise;
    this.#flush();
    const closed = this.#closed = Promise.withResolvers<void>();
    const worker = this.#worker;
    if (worker && this.#failure === null) {
      if (this.#segment) this.#seal(this.#segment);
      send(worker, { type: "close" });
      await closed.promise;
    }
    worker?.terminate();
    for (const segment of this.#open.values()) segment.file.close();
    this.#open.clear();
    this.#unfolded.clear();
    closed.resolve();
  }
}

const encoder = new TextEncoder();

function send(worker: Worker, message: ToFolder): void {
  worker.postMessage(message);
}

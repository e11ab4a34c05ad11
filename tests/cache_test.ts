import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import {
  CacheError,
  cacheKey,
  type CacheKeyParts,
  createCacheKeyer,
  memoryCache,
  openCache,
} from "../src/cache.ts";
import { logLine, pendingLogPath, pendingLogPaths } from "../src/cache_fold.ts";
import { keyHash } from "../src/cache_table.ts";
import { WriteError } from "../src/write_error.ts";

/** A test body that runs `fn` in a fresh temporary directory, removed afterwards. */
function inTempDir(fn: (dir: string) => void | Promise<void>): () => Promise<void> {
  return async () => {
    const dir = await Deno.makeTempDir();
    try {
      await fn(dir);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  };
}

const base: CacheKeyParts = {
  model: "gpt-4o-mini",
  promptId: "thought_process@1",
  temperature: 0.7,
  topP: 1,
  maxTokens: 1024,
  messages: [
    { role: "system", content: "You write thoughts." },
    { role: "user", content: "Question?" },
    { role: "assistant", content: "Answer." },
  ],
};

Deno.test("cacheKey() keeps the keys of earlier versions, whatever the text holds", () => {
  // The keys cotfit-cache-key-v1 has always given: a changed key would silently void every
  // cache file on disk.
  const parts = {
    model: "m",
    promptId: "p@1",
    temperature: 0.7,
    messages: [
      { role: "system" as const, content: "sys ünï 🧠" },
      {
        role: "user" as const,
        content: "lone \uD800 high, lone \uDC00 low, pair \uD83E\uDDE0, é, 日本, " +
          "x".repeat(70000),
      },
    ],
  };
  const key = "35408cc483d9e288ebfa8d5514fa88ee8841eac32ff3ec350372e58bba59b9e8";
  assert.equal(cacheKey(parts), key);
  // The same through the keyer, for a short last message and one past the hashing buffer.
  const keyOf = createCacheKeyer({ model: "m", promptId: "p@1", temperature: 0.7 });
  assert.equal(keyOf(parts.messages), key);
  const short = [parts.messages[0], { role: "user" as const, content: "lone \uD800 é" }];
  assert.equal(keyOf(short), cacheKey({ ...parts, messages: short })); // No extra request fields, or none set, is the key without them.
  assert.equal(cacheKey({ ...parts, extraBody: null }), key);
  assert.equal(cacheKey({ ...parts, extraBody: {} }), key);
});

Deno.test("cacheKey() is stable for equal requests built separately", () => {
  const copy: CacheKeyParts = structuredClone(base);
  assert.equal(cacheKey(copy), cacheKey(base));
  assert.match(cacheKey(base), /^[0-9a-f]{64}$/);
});

Deno.test("cacheKey() changes when any part changes", () => {
  const [system, user, assistant] = base.messages;
  const variants: CacheKeyParts[] = [
    { ...base, model: "gpt-4o" },
    { ...base, promptId: "thought_process@2" },
    { ...base, temperature: 0.8 },
    { ...base, temperature: undefined },
    { ...base, temperature: 0 },
    { ...base, topP: 0.9 },
    { ...base, topP: undefined },
    { ...base, maxTokens: 1025 },
    { ...base, maxTokens: undefined },
    { ...base, messages: [system, user] },
    { ...base, messages: [system, user, assistant, user] },
    { ...base, messages: [user, system, assistant] },
    { ...base, messages: [system, { ...user, content: "Question!" }, assistant] },
    { ...base, messages: [system, { ...user, role: "assistant" }, assistant] },
    { ...base, extraBody: { reasoning_effort: "low" } },
    { ...base, extraBody: { reasoning_effort: "high" } },
    { ...base, extraBody: { chat_template_kwargs: { enable_thinking: false } } },
  ];
  const keys = new Set([cacheKey(base), ...variants.map(cacheKey)]);
  assert.equal(keys.size, variants.length + 1);
});

Deno.test("cacheKey() reads extra request fields in any key order as the same", () => {
  const one = { ...base, extraBody: { a: 1, b: { c: 2, d: [3, { f: 4, e: 5 }] } } };
  const other = { ...base, extraBody: { b: { d: [3, { e: 5, f: 4 }], c: 2 }, a: 1 } };
  assert.equal(cacheKey(one), cacheKey(other));
  // Array order is data, not layout.
  assert.notEqual(
    cacheKey({ ...base, extraBody: { stop: ["a", "b"] } }),
    cacheKey({ ...base, extraBody: { stop: ["b", "a"] } }),
  );
});

Deno.test("cacheKey() does not collide when text moves across a boundary", () => {
  const split = (a: string, b: string): CacheKeyParts => ({
    ...base,
    messages: [{ role: "user", content: a }, { role: "user", content: b }],
  });
  assert.notEqual(cacheKey(split("ab", "c")), cacheKey(split("a", "bc")));
  assert.notEqual(
    cacheKey({ ...base, model: "ab", promptId: "c" }),
    cacheKey({ ...base, model: "a", promptId: "bc" }),
  );
  assert.notEqual(
    cacheKey({ ...base, temperature: 1, topP: undefined }),
    cacheKey({ ...base, temperature: undefined, topP: 1 }),
  );
});

Deno.test("createCacheKeyer() gives cacheKey()'s keys as the leading messages change", () => {
  const parts = { model: "m", promptId: "p", temperature: 0.7 };
  const keyOf = createCacheKeyer(parts);
  const system = { role: "system" as const, content: "Be brief." };
  const example = { role: "user" as const, content: "An example." };
  const requests = [
    [system, { role: "user" as const, content: "Hi" }],
    [system, { role: "user" as const, content: "Hello" }],
    [system, example, { role: "user" as const, content: "Hi" }],
    [{ ...system }, example, { role: "user" as const, content: "Hi" }],
    [{ role: "system" as const, content: "Be long." }, example, {
      role: "user" as const,
      content: "Hi",
    }],
    [{ role: "user" as const, content: "Alone" }],
    [],
  ];
  for (const messages of requests) assert.equal(keyOf(messages), cacheKey({ ...parts, messages }));
});

Deno.test(
  "openCache() round-trips thoughts and counts entries",
  inTempDir((dir) => {
    const cache = openCache(`${dir}/missing/parent/cache.sqlite`);
    assert.equal(cache.size, 0);
    assert.equal(cache.get("a"), undefined);
    cache.put("a", "first thought");
    cache.put("b", "ünïcödé 🧠\nsecond line");
    assert.equal(cache.get("a"), "first thought");
    assert.equal(cache.get("b"), "ünïcödé 🧠\nsecond line");
    assert.equal(cache.size, 2);
    cache.put("a", "replaced");
    assert.equal(cache.get("a"), "replaced");
    assert.equal(cache.size, 2);
    cache.close();
    cache.close();
  }),
);

Deno.test(
  "openCache() close() commits puts not yet committed, and they survive a reopen",
  inTempDir(async (dir) => {
    const path = `${dir}/cache.sqlite`;
    const first = openCache(path);
    const put = first.put("k", "persisted");
    first.close();
    await put;
    // Everything is committed, so the pending log is gone.
    assert.deepEqual(pendingLogPaths(path), []);
    const second = openCache(path);
    assert.equal(second.get("k"), "persisted");
    assert.equal(second.size, 1);
    second.close();
  }),
);

Deno.test(
  "openCache() keeps a put when the process is killed right after it",
  inTempDir(async (dir) => {
    const path = `${dir}/cache.sqlite`;
    const script = `${dir}/put.ts`;
    // Killed by itself as soon as the put resolves: before the end of the turn, so before the
    // SQLite commit.
    await Deno.writeTextFile(
      script,
      `import { openCache } from ${JSON.stringify(import.meta.resolve("../src/cache.ts"))};
const cache = openCache(Deno.args[0]);
await cache.put("key", "survives kill -9");
Deno.kill(Deno.pid, "SIGKILL");
`,
    );
    const status = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", "--allow-read", "--allow-write", "--allow-run", script, path],
      stdout: "null",
      stderr: "null",
    }).output();
    assert.equal(status.signal, "SIGKILL");
    // The row lives only in the pending log.
    const other = new DatabaseSync(path);
    assert.equal(other.prepare("SELECT count(*) AS n FROM thoughts").get()?.n, 0);
    other.close();
    const logs = pendingLogPaths(path);
    assert.equal(logs.length, 1);
    assert.match(await Deno.readTextFile(logs[0]), /survives kill -9/);

    const cache = openCache(path);
    assert.equal(cache.get("key"), "survives kill -9");
    assert.deepEqual(pendingLogPaths(path), []);
    cache.close();
  }),
);

Deno.test(
  "openCache() folds a dead process's pending log, skipping its torn and foreign lines",
  inTempDir(async (dir) => {
    const path = `${dir}/cache.sqlite`;
    openCache(path).close();
    await Deno.writeTextFile(
      pendingLogPath(path, "dead"),
      logLine("a", "first\nthought") + "not json\n" + '["b", 2]\n' + logLine("a", "replaced") +
        logLine("c", "ünïcödé 🧠\0") + '["d", "torn',
    );
    const cache = openCache(path);
    assert.equal(cache.get("a"), "replaced");
    assert.equal(cache.get("b"), undefined);
    assert.equal(cache.get("c"), "ünïcödé 🧠\0");
    assert.equal(cache.get("d"), undefined);
    assert.equal(cache.size, 2);
    assert.deepEqual(pendingLogPaths(path), []);
    cache.close();
  }),
);

Deno.test(
  "openCache() removes a log a crash left before naming it, once it is a minute old",
  inTempDir(async (dir) => {
    const path = `${dir}/cache.sqlite`;
    const old = `${pendingLogPath(path, "old")}.new`;
    const fresh = `${pendingLogPath(path, "fresh")}.new`;
    await Deno.writeTextFile(old, "");
    await Deno.utime(old, new Date(Date.now() - 120_000), new Date(Date.now() - 120_000));
    await Deno.writeTextFile(fresh, "");
    openCache(path).close();
    await assert.rejects(() => Deno.stat(old), Deno.errors.NotFound);
    // Perhaps another process's, about to be locked and renamed.
    assert.ok((await Deno.stat(fresh)).isFile);
  }),
);

Deno.test(
  "openCache() leaves the pending log of a live writer to it",
  inTempDir(async (dir) => {
    const path = `${dir}/cache.sqlite`;
    const writer = openCache(path);
    await writer.put("k", "from the writer");
    const [log] = pendingLogPaths(path);
    assert.ok(log);
    const reader = openCache(path);
    // Still the writer's: not folded by the reader, not removed.
    assert.deepEqual(pendingLogPaths(path), [log]);
    writer.close();
    assert.deepEqual(pendingLogPaths(path), []);
    assert.equal(reader.get("k"), "from the writer");
    reader.close();
  }),
);

function assertCacheError(path: string, reason: RegExp): (error: unknown) => boolean {
  return (error: unknown) => {
    assert.ok(error instanceof CacheError);
    assert.equal(error.path, path);
    assert.ok(error.message.startsWith(`Cannot open cache "${path}": `), error.message);
    assert.match(error.reason, reason);
    return true;
  };
}

Deno.test(
  "openCache() throws CacheError naming the path of a file that is not a database",
  inTempDir(async (dir) => {
    const path = `${dir}/notes.txt`;
    await Deno.writeTextFile(path, "this is not a SQLite database, just text. ".repeat(100));
    assert.throws(() => openCache(path), assertCacheError(path, /not a database/));
  }),
);

Deno.test(
  "openCache() throws CacheError naming the path when the directory cannot be made",
  inTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/file`, "");
    const path = `${dir}/file/cache.sqlite`;
    assert.throws(() => openCache(path), assertCacheError(path, /./));
  }),
);

Deno.test(
  "openCache() rewrites a version 1 cache in place, keeping every thought",
  inTempDir((dir) => {
    const path = `${dir}/cache.sqlite`;
    const old = new DatabaseSync(path);
    old.exec(`
      CREATE TABLE thoughts (key TEXT PRIMARY KEY, thought TEXT NOT NULL, created_at INTEGER);
      PRAGMA user_version = 1;
    `);
    const insert = old.prepare("INSERT INTO thoughts VALUES (?, ?, 1700000000)");
    insert.run("a".repeat(64), "first");
    insert.run("b".repeat(64), new TextEncoder().encode("with\0NUL"));
    old.close();
    const cache = openCache(path);
    assert.equal(cache.get("a".repeat(64)), "first");
    assert.equal(cache.get("b".repeat(64)), "with\0NUL");
    assert.equal(cache.size, 2);
    cache.close();
    const db = new DatabaseSync(path);
    assert.equal(db.prepare("PRAGMA user_version").get()?.user_version, 2);
    assert.equal(
      db.prepare("SELECT created_at FROM thoughts LIMIT 1").get()?.created_at,
      1700000000,
    );
    db.close();
  }),
);

Deno.test(
  "openCache() tells apart two keys that share the index's hash",
  inTempDir(async (dir) => {
    const seen = new Map<number, string>();
    let pair: [string, string] | undefined;
    for (let i = 0; pair === undefined; i++) {
      const key = `k${i}`;
      const hash = keyHash(key);
      const other = seen.get(hash);
      if (other !== undefined) pair = [other, key];
      seen.set(hash, key);
    }
    const path = `${dir}/cache.sqlite`;
    const cache = openCache(path);
    await Promise.all([cache.put(pair[0], "one"), cache.put(pair[1], "two")]);
    cache.close();
    const reopened = openCache(path);
    assert.deepEqual([reopened.get(pair[0]), reopened.get(pair[1])], ["one", "two"]);
    reopened.close();
  }),
);

Deno.test(
  "openCache() finds every thought of a reopened cache whole, one with a NUL too, and nothing else",
  inTempDir(async (dir) => {
    const path = `${dir}/cache.sqlite`;
    const keys = Array.from({ length: 5_000 }, (_, i) => cacheKey({ ...base, maxTokens: i }));
    const withNul = "before\0after ünïcödé";
    const first = openCache(path);
    await Promise.all(keys.map((key, i) => first.put(key, `thought ${i}`)));
    await first.put("k", withNul);
    assert.equal(first.get("k"), withNul);
    first.close();
    const reopened = openCache(path);
    keys.forEach((key, i) => assert.equal(reopened.get(key), `thought ${i}`));
    assert.equal(reopened.get("k"), withNul);
    assert.equal(reopened.get(cacheKey({ ...base, maxTokens: 5_000 })), undefined);
    reopened.close();
  }),
);

Deno.test(
  "openCache() sees the thoughts another process writes while open, and replaces them in place",
  inTempDir(async (dir) => {
    const path = `${dir}/cache.sqlite`;
    const ours = openCache(path);
    assert.equal(ours.get("k1"), undefined);
    const theirs = openCache(path);
    await theirs.put("k1", "their first");
    theirs.close();
    await new Promise((resolve) => setTimeout(resolve, 0));
    assert.equal(ours.get("k1"), "their first");
    // Written after our last get: only the write itself can learn that it replaces a row.
    const again = openCache(path);
    await again.put("k2", "their second");
    again.close();
    await Promise.all([ours.put("k1", "our first"), ours.put("k2", "our second")]);
    ours.close();
    const db = new DatabaseSync(path);
    assert.deepEqual(
      db.prepare("SELECT key, thought FROM thoughts ORDER BY key").all().map((row) => ({
        ...row,
      })),
      [{ key: "k1", thought: "our first" }, { key: "k2", thought: "our second" }],
    );
    db.close();
  }),
);

Deno.test(
  "openCache() makes a new file with 16 KiB pages and keeps an existing file's own",
  inTempDir((dir) => {
    const pageSize = (path: string) => {
      const db = new DatabaseSync(path);
      const size = db.prepare("PRAGMA page_size").get()?.page_size;
      db.close();
      return size;
    };
    openCache(`${dir}/new.sqlite`).close();
    assert.equal(pageSize(`${dir}/new.sqlite`), 16384);
    const old = new DatabaseSync(`${dir}/old.sqlite`);
    old.exec("CREATE TABLE other (x)");
    old.close();
    const cache = openCache(`${dir}/old.sqlite`);
    cache.close();
    assert.equal(pageSize(`${dir}/old.sqlite`), 4096);
  }),
);

Deno.test(
  "openCache() refuses a cache written with another schema version",
  inTempDir((dir) => {
    const path = `${dir}/cache.sqlite`;
    const db = new DatabaseSync(path);
    db.exec("PRAGMA user_version = 99");
    db.close();
    assert.throws(() => openCache(path), assertCacheError(path, /schema version 99/));
  }),
);

Deno.test(
  "openCache() writes puts in batches every 50 ms, holding the write lock only while it writes",
  inTempDir(async (dir) => {
    const path = `${dir}/cache.sqlite`;
    const cache = openCache(path);
    const other = new DatabaseSync(path);
    other.exec("PRAGMA busy_timeout = 0");
    const count = () => Number(other.prepare("SELECT count(*) AS n FROM thoughts").get()?.n);
    const puts = Array.from({ length: 100 }, (_, i) => cache.put(`k${i}`, `t${i}`));
    assert.equal(cache.get("k99"), "t99");
    // Durable once they resolve (in the pending log), not yet in SQLite.
    await Promise.all(puts);
    assert.equal(count(), 0);
    // Another process may write meanwhile: the lock is free (busy_timeout 0 would throw).
    other.exec(
      `BEGIN IMMEDIATE; INSERT INTO thoughts (key_hash, key, thought) VALUES (${
        keyHash("x")
      }, 'x', 'y'); COMMIT`,
    );
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(count(), 101);
    assert.equal(cache.get("x"), "y");
    other.close();
    cache.close();
  }),
);

Deno.test(
  "openCache() keeps the puts of a failed write in its log, refuses later ones, and reopening recovers them",
  inTempDir(async (dir) => {
    const path = `${dir}/cache.sqlite`;
    const cache = openCache(path);
    const other = new DatabaseSync(path);
    other.exec(
      // After the first row: the rolled-back batch had taken a rowid.
      "CREATE TRIGGER full BEFORE INSERT ON thoughts WHEN NEW.key = 'b' " +
        "BEGIN SELECT RAISE(ABORT, 'disk full'); END",
    );
    await Promise.all([cache.put("a", "t1"), cache.put("b", "t2")]);
    await new Promise((resolve) => setTimeout(resolve, 100));
    await assert.rejects(() => cache.put("c", "t3"), /disk full/);
    assert.equal(cache.get("a"), "t1");
    // The rowids of the rolled-back rows go to another process's row, which is still seen.
    other.exec("DROP TRIGGER full");
    other.prepare("INSERT INTO thoughts (key_hash, key, thought) VALUES (?, 'z', 'theirs')")
      .run(keyHash("z"));
    await new Promise((resolve) => setTimeout(resolve, 0));
    assert.equal(cache.get("z"), "theirs");
    // Closing says so too: the failure may have come from the timer, after the last put.
    assert.throws(
      () => cache.close(),
      (error) =>
        error instanceof WriteError &&
        error.message === `Cannot write cache "${path}": disk full`,
    );
    other.close();
    const reopened = openCache(path);
    assert.deepEqual(
      [reopened.get("a"), reopened.get("b"), reopened.get("z"), reopened.size],
      ["t1", "t2", "theirs", 3],
    );
    reopened.close();
  }),
);

Deno.test(
  "openCache() put rejects with the reason when its pending log cannot be written",
  inTempDir(async (dir) => {
    const path = `${dir}/sub/cache.sqlite`;
    const cache = openCache(path);
    // Gone from under the open cache: the log, made at the first put, has nowhere to go.
    await Deno.remove(`${dir}/sub`, { recursive: true });
    await assert.rejects(
      cache.put("a", "t1"),
      (error) =>
        error instanceof WriteError &&
        error.message.startsWith(`Cannot write cache log "${path}": No such file or directory`),
    );
    cache.close();
  }),
);

Deno.test(
  "openCache() writes puts at once past 4 Mi characters of thought",
  inTempDir((dir) => {
    const path = `${dir}/cache.sqlite`;
    const cache = openCache(path);
    const other = new DatabaseSync(path);
    const count = () => Number(other.prepare("SELECT count(*) AS n FROM thoughts").get()?.n);
    const thought = "t".repeat(1024 * 1024);
    const puts = [cache.put("a", thought), cache.put("b", thought), cache.put("c", thought)];
    assert.equal(count(), 0);
    puts.push(cache.put("d", thought));
    assert.equal(count(), 4);
    assert.equal(cache.get("d"), thought);
    other.close();
    cache.close();
    return Promise.all(puts).then(() => {});
  }),
);

Deno.test("memoryCache() drops the oldest entries past maxEntries", async () => {
  const cache = memoryCache({ maxEntries: 3 });
  for (const key of ["a", "b", "c"]) await cache.put(key, key.toUpperCase());
  await cache.put("a", "A2");
  await cache.put("d", "D");
  assert.equal(cache.size, 3);
  assert.equal(cache.get("b"), undefined);
  assert.equal(cache.get("a"), "A2");
  assert.equal(cache.get("d"), "D");
  assert.throws(() => memoryCache({ maxEntries: 0 }), RangeError);
});

Deno.test("memoryCache() drops the oldest entries past maxChars, keeping the newest", async () => {
  // Each entry weighs its key (1) plus its thought (9): 10 units.
  const cache = memoryCache({ maxChars: 25 });
  for (const key of ["a", "b", "c"]) await cache.put(key, key.repeat(9));
  assert.equal(cache.size, 2);
  assert.equal(cache.get("a"), undefined);
  assert.equal(cache.get("c"), "ccccccccc");
  // Replacing an entry with a longer thought evicts by the new weight.
  await cache.put("c", "c".repeat(19));
  assert.equal(cache.size, 1);
  assert.equal(cache.get("b"), undefined);
  // One entry larger than the bound is still kept: the latest thought is always served.
  await cache.put("d", "d".repeat(40));
  assert.equal(cache.size, 1);
  assert.equal(cache.get("d"), "d".repeat(40));
  assert.throws(() => memoryCache({ maxChars: 1.5 }), RangeError);
});

Deno.test("memoryCache() round-trips thoughts and counts entries", () => {
  const cache = memoryCache();
  assert.equal(cache.get("k"), undefined);
  cache.put("k", "t1");
  cache.put("k", "t2");
  cache.put("j", "t3");
  assert.equal(cache.get("k"), "t2");
  assert.equal(cache.size, 2);
  cache.close();
  assert.equal(cache.size, 0);
});

import assert from "node:assert/strict";
import { createDeadlines, followAbort, unfollowAbort } from "../src/deadlines.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

Deno.test("createDeadlines() expires pending deadlines in start order, each once", async () => {
  const deadlines = createDeadlines(30);
  const expired: number[] = [];
  for (let i = 0; i < 5; i++) {
    deadlines.start(() => expired.push(i));
    await sleep(2);
  }
  assert.equal(deadlines.pending, 5);
  await sleep(80);
  assert.deepEqual(expired, [0, 1, 2, 3, 4]);
  assert.equal(deadlines.pending, 0);
});

Deno.test("createDeadlines() never expires a cleared deadline", async () => {
  const deadlines = createDeadlines(20);
  const cleared = [1, 2, 3].map(() => deadlines.start(() => assert.fail("expired")));
  cleared[1].clear();
  cleared[0].clear();
  cleared[2].clear();
  cleared[2].clear();
  assert.equal(deadlines.pending, 0);
  await sleep(60);
});

Deno.test("createDeadlines() leaves no timer to hold the process once every deadline is cleared", async () => {
  // A timer left for a cleared deadline would keep a finished run alive until the timeout.
  const script = `
    import { createDeadlines } from ${
    JSON.stringify(new URL("../src/deadlines.ts", import.meta.url).href)
  };
    const deadlines = createDeadlines(60_000);
    const first = deadlines.start(() => {});
    const second = deadlines.start(() => {});
    first.clear();
    await new Promise((resolve) => setTimeout(resolve, 10));
    second.clear();
  `;
  const started = performance.now();
  const child = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--no-prompt", script],
    stdout: "null",
    stderr: "inherit",
  }).output();
  assert.equal(child.code, 0);
  const seconds = (performance.now() - started) / 1000;
  assert.ok(seconds < 30, `the process took ${seconds} s to exit`);
});

Deno.test("createDeadlines() does not expire a newer deadline early when the oldest is cleared", async () => {
  const deadlines = createDeadlines(60);
  const oldest = deadlines.start(() => assert.fail("the cleared deadline expired"));
  await sleep(30);
  const startedAt = performance.now();
  let expiredAfter = -1;
  deadlines.start(() => expiredAfter = performance.now() - startedAt);
  // The timer still waits for the cleared deadline; when it fires it must re-arm, not expire.
  oldest.clear();
  await sleep(120);
  assert.ok(expiredAfter >= 59, `expired ${expiredAfter} ms after its start, before its 60 ms`);
});

Deno.test("createDeadlines() lets an expiring deadline start another", async () => {
  const deadlines = createDeadlines(10);
  let rounds = 0;
  const again = () => {
    if (++rounds < 3) deadlines.start(again);
  };
  deadlines.start(again);
  await sleep(100);
  assert.equal(rounds, 3);
  assert.equal(deadlines.pending, 0);
});

Deno.test("createDeadlines() rejects a timeout that is not a finite number >= 0", () => {
  for (const timeoutMs of [-1, Number.NaN, Infinity]) {
    assert.throws(() => createDeadlines(timeoutMs), RangeError);
  }
});

Deno.test("followAbort() aborts every follower with the signal's reason, and no unfollowed one", () => {
  const caller = new AbortController();
  const followers = [0, 1, 2].map(() => new AbortController());
  for (const follower of followers) followAbort(caller.signal, follower);
  unfollowAbort(caller.signal, followers[1]);
  caller.abort(new Error("client went away"));
  assert.deepEqual(followers.map((follower) => follower.signal.aborted), [true, false, true]);
  assert.equal((followers[0].signal.reason as Error).message, "client went away");
});

Deno.test("followAbort() aborts at once when the signal already aborted", () => {
  const follower = new AbortController();
  followAbort(AbortSignal.abort(), follower);
  assert.equal(follower.signal.aborted, true);
});

Deno.test("followAbort() keeps one listener on a signal however many controllers follow it", () => {
  const caller = new AbortController();
  let listeners = 0;
  const add = caller.signal.addEventListener.bind(caller.signal);
  caller.signal.addEventListener = (...args: Parameters<AbortSignal["addEventListener"]>) => {
    listeners++;
    add(...args);
  };
  for (let i = 0; i < 100; i++) {
    const follower = new AbortController();
    followAbort(caller.signal, follower);
    unfollowAbort(caller.signal, follower);
  }
  assert.equal(listeners, 1);
});

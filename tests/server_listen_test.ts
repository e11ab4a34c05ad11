import assert from "node:assert/strict";
import { listen } from "../src/server_listen.ts";
import { pushedBody } from "./stream_helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const LOCAL = { hostname: "127.0.0.1", port: 0 };

async function waitFor(condition: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = performance.now() + ms;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${ms} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

Deno.test("listen() streams the response while the request body is still arriving", async () => {
  // Echoes each chunk upper-cased, as soon as it arrives.
  await using server = await listen((request) => {
    const reader = request.body!.getReader();
    return new Response(
      new ReadableStream<Uint8Array>({
        async pull(controller) {
          const { done, value } = await reader.read();
          if (done) return controller.close();
          controller.enqueue(encoder.encode(decoder.decode(value).toUpperCase()));
        },
      }),
      { status: 201, headers: { "x-echo": "1" } },
    );
  }, LOCAL);
  const body = pushedBody();
  body.push("one\n");
  const response = await fetch(`http://127.0.0.1:${server.addr.port}/`, {
    method: "POST",
    body: body.stream,
    duplex: "half",
  } as RequestInit);
  assert.equal(response.status, 201);
  assert.equal(response.headers.get("x-echo"), "1");
  const reader = response.body!.getReader();
  assert.equal(decoder.decode((await reader.read()).value), "ONE\n");
  body.push("two\n");
  assert.equal(decoder.decode((await reader.read()).value), "TWO\n");
  body.close();
  assert.equal((await reader.read()).done, true);
});

Deno.test("listen() reads the upload only as fast as the handler does", async () => {
  let handlerReader: ReadableStreamDefaultReader<Uint8Array> | null = null;
  let endResponse = () => {};
  await using server = await listen((request) => {
    handlerReader = request.body!.getReader();
    // The response has started and stays open while the body is not read.
    return new Response(
      new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(encoder.encode("started\n"));
          endResponse = () => controller.close();
        },
      }),
    );
  }, LOCAL);
  let sent = 0;
  const chunk = new Uint8Array(64 * 1024);
  const response = await fetch(`http://127.0.0.1:${server.addr.port}/`, {
    method: "POST",
    body: new ReadableStream<Uint8Array>({
      pull(controller) {
        sent += chunk.length;
        controller.enqueue(chunk);
      },
    }, { highWaterMark: 0 }),
    duplex: "half",
  } as RequestInit);
  const reader = response.body!.getReader();
  assert.equal(decoder.decode((await reader.read()).value), "started\n");
  await sleep(500);
  const stalled = sent;
  await sleep(300);
  assert.equal(sent, stalled, "the client's upload is held back");
  assert.ok(sent < 32 * 1024 * 1024, `${sent} bytes went out before the upload stalled`);
  // Reading on the server lets it go on.
  let read = 0;
  while (read < stalled) read += (await handlerReader!.read()).value?.length ?? 0;
  await waitFor(() => sent > stalled, 2_000, "the upload to resume");
  // Ending the response with the upload unread hangs up rather than reading it all.
  endResponse();
  assert.equal((await reader.read()).done, true);
});

Deno.test("listen() cancels the response and aborts request.signal when the client leaves", async () => {
  const cancelled = Promise.withResolvers<unknown>();
  const aborted = Promise.withResolvers<void>();
  await using server = await listen((request) => {
    request.signal.addEventListener("abort", () => aborted.resolve());
    return new Response(
      new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(encoder.encode("first\n"));
        },
        cancel: (reason) => cancelled.resolve(reason),
      }),
    );
  }, LOCAL);
  const client = new AbortController();
  const response = await fetch(`http://127.0.0.1:${server.addr.port}/`, {
    signal: client.signal,
  });
  const reader = response.body!.getReader();
  assert.equal(decoder.decode((await reader.read()).value), "first\n");
  client.abort();
  await reader.cancel().catch(() => {});
  const timeout = sleep(1_000).then(() => "timeout");
  assert.notEqual(await Promise.race([cancelled.promise, timeout]), "timeout");
  assert.notEqual(await Promise.race([aborted.promise, timeout]), "timeout");
});

Deno.test("listen() shutdown() lets a response in flight finish, then stops", async () => {
  const server = await listen(() =>
    new Response(ReadableStream.from((async function* () {
      for (const word of ["a", "b", "c"]) {
        await sleep(100);
        yield encoder.encode(word);
      }
    })())), LOCAL);
  const url = `http://127.0.0.1:${server.addr.port}/`;
  const response = await fetch(url);
  const shutdown = server.shutdown();
  assert.equal(await response.text(), "abc");
  await shutdown;
  await server.finished;
  await assert.rejects(fetch(url));
});

Deno.test("listen() shutdown() closes keep-alive connections between requests", async () => {
  const server = await listen(() => new Response("hi"), LOCAL);
  const url = `http://127.0.0.1:${server.addr.port}/`;
  // Both connections stay in the client's pool, idle, once answered.
  assert.equal(await (await fetch(url)).text(), "hi");
  assert.equal(await (await fetch(url, { method: "POST", body: "x".repeat(5_000) })).text(), "hi");
  const timeout = sleep(2_000).then(() => "timeout");
  assert.notEqual(await Promise.race([server.shutdown(), timeout]), "timeout");
  await server.finished;
});

Deno.test("listen() answers HEAD without a body and keeps every set-cookie", async () => {
  await using server = await listen(() => {
    const headers = new Headers({ "content-type": "text/plain" });
    headers.append("set-cookie", "a=1");
    headers.append("set-cookie", "b=2");
    return new Response("body", { headers });
  }, LOCAL);
  const url = `http://127.0.0.1:${server.addr.port}/`;
  const head = await fetch(url, { method: "HEAD" });
  assert.equal(await head.text(), "");
  const get = await fetch(url);
  assert.deepEqual(get.headers.getSetCookie(), ["a=1", "b=2"]);
  assert.equal(await get.text(), "body");
});

Deno.test("listen() rejects when the port is taken", async () => {
  await using first = await listen(() => new Response("x"), LOCAL);
  await assert.rejects(listen(() => new Response("y"), { ...LOCAL, port: first.addr.port }));
});

import assert from "node:assert/strict";
import { concat } from "../src/lines.ts";
import { brotliCompressSync, deflateRawSync, deflateSync, gzipSync } from "node:zlib";
import {
  createHttp1Pool,
  HttpResponseError,
  ResponseTooLargeError,
  UnknownCodingError,
} from "../src/http1.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** One request as the raw server saw it. */
interface SeenRequest {
  readonly connection: number;
  readonly head: string;
  readonly body: string;
}

/** What the raw server does with request `n` (0-based, over all connections). */
type Reply = (n: number) => { bytes: string | Uint8Array; close?: boolean; hang?: boolean };

/**
 * A TCP server that answers each HTTP/1.1 request with scripted raw bytes, so the pool meets
 * framings and failures a well-behaved server would never send.
 */
function rawServer(reply: Reply) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const seen: SeenRequest[] = [];
  const conns = new Set<Deno.Conn>();
  let connections = 0;
  const serve = async (conn: Deno.Conn, id: number) => {
    let pending = new Uint8Array(0);
    const buffer = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        let text = decoder.decode(pending);
        let headEnd = text.indexOf("\r\n\r\n");
        let length = headEnd < 0 ? -1 : Number(/content-length: (\d+)/i.exec(text)?.[1] ?? 0);
        while (headEnd < 0 || pending.length < headEnd + 4 + length) {
          const count = await conn.read(buffer);
          if (count === null) return;
          const grown = new Uint8Array(pending.length + count);
          grown.set(pending);
          grown.set(buffer.subarray(0, count), pending.length);
          pending = grown;
          text = decoder.decode(pending);
          headEnd = text.indexOf("\r\n\r\n");
          length = headEnd < 0 ? -1 : Number(/content-length: (\d+)/i.exec(text)?.[1] ?? 0);
        }
        const n = seen.length;
        seen.push({
          connection: id,
          head: text.slice(0, headEnd),
          body: text.slice(headEnd + 4, headEnd + 4 + length),
        });
        pending = pending.slice(encoder.encode(text.slice(0, headEnd + 4 + length)).length);
        const { bytes, close, hang } = reply(n);
        const data = typeof bytes === "string" ? encoder.encode(bytes) : bytes;
        for (let offset = 0; offset < data.length;) {
          offset += await conn.write(data.subarray(offset));
        }
        if (hang) await new Promise<void>(() => {});
        if (close) return;
      }
    } catch {
      // The client closed or reset the connection.
    } finally {
      conns.delete(conn);
      try {
        conn.close();
      } catch {
        // Already closed.
      }
    }
  };
  const accepting = (async () => {
    for await (const conn of listener) {
      conns.add(conn);
      serve(conn, connections++);
    }
  })();
  const { port } = listener.addr;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    get connections() {
      return connections;
    },
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const conn of conns) conn.close();
      await accepting.catch(() => {});
    },
  };
}

function ok(body: string, extra = ""): string {
  return `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${
    encoder.encode(body).length
  }\r\n${extra}\r\n${body}`;
}

const HEADERS = { "content-type": "application/json" };

Deno.test("createHttp1Pool() reuses one keep-alive connection for sequential requests", async () => {
  await using server = rawServer((n) => ({ bytes: ok(`{"n":${n}}`) }));
  using pool = createHttp1Pool(server.url);
  for (let i = 0; i < 3; i++) {
    const response = await pool.post("/v1/chat/completions?x=1", HEADERS, `{"i":${i}}`);
    assert.equal(response.status, 200);
    assert.deepEqual(JSON.parse(response.body), { n: i });
  }
  assert.equal(server.connections, 1);
  assert.match(server.seen[0].head, /^POST \/v1\/chat\/completions\?x=1 HTTP\/1\.1\r\n/);
  assert.match(server.seen[0].head, new RegExp(`\r\nhost: ${new URL(server.url).host}\r\n`));
  assert.deepEqual(server.seen.map((request) => request.body), ['{"i":0}', '{"i":1}', '{"i":2}']);
});

Deno.test("createHttp1Pool() sends bodies of changing sizes intact on one reused connection", async () => {
  // The connection's request buffer is reused: a short body after a long one must not carry
  // the long one's tail, and a longer one must get a larger buffer.
  await using server = rawServer((n) => ({ bytes: ok(`${n}`) }));
  using pool = createHttp1Pool(server.url);
  // One scratch buffer for every body, as llm.ts passes them: each is copied before post returns.
  const scratch = new Uint8Array(200_000);
  const bodies = [
    "x".repeat(5_000),
    "short",
    `{"text":"${"é".repeat(60_000)}"}`,
    "",
    "y".repeat(300_000),
    "last",
  ];
  for (const body of bodies) {
    const bytes = encoder.encode(body);
    const view = bytes.length <= scratch.length ? scratch.subarray(0, bytes.length) : bytes;
    view.set(bytes);
    const response = pool.post("/", HEADERS, view);
    scratch.fill(0x21);
    await response;
  }
  assert.equal(server.connections, 1);
  assert.deepEqual(server.seen.map((request) => request.body), bodies);
  for (const [i, request] of server.seen.entries()) {
    const length = Number(/content-length: (\d+)/.exec(request.head)?.[1]);
    assert.equal(length, encoder.encode(bodies[i]).length);
  }
});

Deno.test("createHttp1Pool() sends the UTF-8 byte length of a non-ASCII body", async () => {
  await using server = rawServer(() => ({ bytes: ok("{}") }));
  using pool = createHttp1Pool(server.url);
  await pool.post("/", HEADERS, '{"text":"日本語 — ok"}');
  assert.equal(server.seen[0].body, '{"text":"日本語 — ok"}');
  assert.match(server.seen[0].head, /content-length: 27\r?$/m);
});

Deno.test("createHttp1Pool() reads chunked bodies with extensions and trailers", async () => {
  const chunked = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" +
    "5;ext=1\r\nhello\r\n8\r\n, wörld\r\n0\r\nx-trailer: yes\r\n\r\n";
  await using server = rawServer(() => ({ bytes: chunked }));
  using pool = createHttp1Pool(server.url);
  assert.equal((await pool.post("/", HEADERS, "{}")).body, "hello, wörld");
  assert.equal((await pool.post("/", HEADERS, "{}")).body, "hello, wörld");
  assert.equal(server.connections, 1);
});

Deno.test("createHttp1Pool() opens a new connection after Connection: close", async () => {
  await using server = rawServer((n) => ({
    bytes: ok(`${n}`, "connection: close\r\n"),
    close: true,
  }));
  using pool = createHttp1Pool(server.url);
  assert.equal((await pool.post("/", HEADERS, "{}")).body, "0");
  assert.equal((await pool.post("/", HEADERS, "{}")).body, "1");
  assert.equal(server.connections, 2);
});

Deno.test("createHttp1Pool() resends on a fresh connection when a reused one was closed by the server", async () => {
  // The server closes after each reply without saying so: the pool only learns it on reuse.
  await using server = rawServer((n) => ({ bytes: ok(`${n}`), close: true }));
  using pool = createHttp1Pool(server.url);
  assert.equal((await pool.post("/", HEADERS, "{}")).body, "0");
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal((await pool.post("/", HEADERS, "{}")).body, "1");
  assert.equal(server.connections, 2);
  assert.equal(server.seen.length, 2);
});

Deno.test("createHttp1Pool() does not reuse a connection idle longer than idleMs", async () => {
  await using server = rawServer((n) => ({ bytes: ok(`${n}`) }));
  using pool = createHttp1Pool(server.url, { idleMs: 0 });
  await pool.post("/", HEADERS, "{}");
  await pool.post("/", HEADERS, "{}");
  assert.equal(server.connections, 2);
});

Deno.test("createHttp1Pool() skips interim 1xx responses", async () => {
  await using server = rawServer(() => ({
    bytes: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\n" +
      ok("done"),
  }));
  using pool = createHttp1Pool(server.url);
  const response = await pool.post("/", HEADERS, "{}");
  assert.equal(response.status, 200);
  assert.equal(response.body, "done");
});

Deno.test("createHttp1Pool() reads a body delimited by the end of the connection", async () => {
  await using server = rawServer(() => ({
    bytes: "HTTP/1.0 503 Service Unavailable\r\nretry-after: 2\r\n\r\noverloaded",
    close: true,
  }));
  using pool = createHttp1Pool(server.url);
  const response = await pool.post("/", HEADERS, "{}");
  assert.equal(response.status, 503);
  assert.equal(response.headers.get("retry-after"), "2");
  assert.equal(response.body, "overloaded");
});

Deno.test("createHttp1Pool() reads a response split across many small writes", async () => {
  const whole = ok(JSON.stringify({ text: "x".repeat(40_000) }));
  await using server = rawServer(() => ({ bytes: whole }));
  using pool = createHttp1Pool(server.url);
  const response = await pool.post("/", HEADERS, "{}");
  assert.equal(JSON.parse(response.body).text.length, 40_000);
});

Deno.test("createHttp1Pool() fails a cut or malformed response with HttpResponseError", async (t) => {
  const cases: Record<string, string> = {
    "body cut short": "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this",
    "head cut short": "HTTP/1.1 200 OK\r\ncontent-len",
    "bad status line": "SMTP ready\r\n\r\n",
    "bad chunk size": "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
    "chunk cut short": "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n10\r\nabc",
    "conflicting lengths": "HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab",
  };
  for (const [name, bytes] of Object.entries(cases)) {
    await t.step(name, async () => {
      await using server = rawServer(() => ({ bytes, close: true }));
      using pool = createHttp1Pool(server.url);
      await assert.rejects(pool.post("/", HEADERS, "{}"), HttpResponseError);
    });
  }
});

Deno.test("createHttp1Pool() refuses a response over maxResponseBytes, however framed", async (t) => {
  const big = "y".repeat(5_000);
  const framings: Record<string, string> = {
    "content-length": ok(big),
    chunked: "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" +
      `400\r\n${big.slice(0, 0x400)}\r\n`.repeat(5) + "0\r\n\r\n",
    "end of connection": `HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n${big}`,
  };
  for (const [name, bytes] of Object.entries(framings)) {
    await t.step(name, async () => {
      await using server = rawServer(() => ({ bytes, close: true }));
      using pool = createHttp1Pool(server.url, { maxResponseBytes: 1_000 });
      const error = await pool.post("/", HEADERS, "{}").then(() => null, (error) => error);
      assert.ok(error instanceof ResponseTooLargeError, String(error));
      assert.equal(error.maxBytes, 1_000);
      assert.match(error.message, /over 1000 bytes/);
    });
  }
});

Deno.test("createHttp1Pool() fails with the network error when nothing listens", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  using pool = createHttp1Pool(`http://127.0.0.1:${port}`);
  await assert.rejects(pool.post("/", HEADERS, "{}"), Deno.errors.ConnectionRefused);
});

Deno.test("createHttp1Pool() stops waiting and closes the connection when the signal aborts", async () => {
  await using server = rawServer(() => ({ bytes: "HTTP/1.1 200 OK\r\n", hang: true }));
  using pool = createHttp1Pool(server.url);
  const controller = new AbortController();
  const call = pool.post("/", HEADERS, "{}", controller.signal);
  setTimeout(() => controller.abort(), 50);
  await assert.rejects(call, (error: unknown) => {
    assert.ok(error instanceof DOMException);
    assert.equal(error.name, "AbortError");
    return true;
  });
});

Deno.test("createHttp1Pool() refuses a header value holding a line break", async () => {
  await using server = rawServer(() => ({ bytes: ok("{}") }));
  using pool = createHttp1Pool(server.url);
  await assert.rejects(
    pool.post("/", { authorization: "Bearer x\r\nx-injected: 1" }, "{}"),
    /line break/,
  );
  assert.equal(server.seen.length, 0);
});

Deno.test("createHttp1Pool() refuses an https origin", () => {
  assert.throws(() => createHttp1Pool("https://api.openai.com/v1"), TypeError);
});

Deno.test("createHttp1Pool() serves concurrent calls when opening is capped at one connection at a time", async () => {
  await using server = rawServer((n) => ({ bytes: ok(`${n}`) }));
  using pool = createHttp1Pool(server.url, { maxConnecting: 1 });
  const bodies = await Promise.all(
    Array.from({ length: 5 }, async () => (await pool.post("/", HEADERS, "{}")).body),
  );
  assert.deepEqual(bodies.toSorted(), ["0", "1", "2", "3", "4"]);
  assert.equal(server.connections, 5);
});

Deno.test("createHttp1Pool() reaches a server on 127.0.0.1 through localhost", async () => {
  await using server = rawServer(() => ({ bytes: ok("{}") }));
  using pool = createHttp1Pool(server.url.replace("127.0.0.1", "localhost"));
  assert.equal((await pool.post("/", HEADERS, "{}")).status, 200);
});

Deno.test("createHttp1Pool() reaches a server on ::1 only through localhost", async () => {
  let listener: Deno.TcpListener;
  try {
    listener = Deno.listen({ hostname: "::1", port: 0 });
  } catch {
    return; // No IPv6 loopback on this machine: nothing to check.
  }
  const served = (async () => {
    const conn = await listener.accept();
    const buffer = new Uint8Array(4096);
    await conn.read(buffer);
    await conn.write(encoder.encode(ok('{"v6":true}', "connection: close\r\n")));
    conn.close();
  })();
  using pool = createHttp1Pool(`http://localhost:${listener.addr.port}`);
  assert.equal((await pool.post("/", HEADERS, "{}")).body, '{"v6":true}');
  await served;
  listener.close();
});

Deno.test("createHttp1Pool() gives header fields case-insensitively, repeated ones joined as Headers does", async () => {
  await using server = rawServer(() => ({
    bytes: "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Seen:  a \r\n" +
      "x-seen: b\r\ncontent-length: 2\r\n\r\n{}",
  }));
  using pool = createHttp1Pool(server.url);
  const response = await pool.post("/", HEADERS, "{}");
  assert.equal(response.header("content-type"), "application/json");
  assert.equal(response.header("X-SEEN"), "a, b");
  assert.equal(response.header("retry-after"), null);
  assert.deepEqual([...response.headers], [
    ["content-length", "2"],
    ["content-type", "application/json"],
    ["x-seen", "a, b"],
  ]);
});

Deno.test("createHttp1Pool() refuses a header field name that Headers would refuse", async () => {
  await using server = rawServer(() => ({
    bytes: "HTTP/1.1 200 OK\r\nbad name: x\r\ncontent-length: 2\r\n\r\n{}",
  }));
  using pool = createHttp1Pool(server.url);
  const error = await pool.post("/", HEADERS, "{}").then(() => null, (error) => error);
  assert.ok(error instanceof HttpResponseError);
  assert.match(error.message, /bad header "bad name: x"/);
});

/** A 200 whose body is `body` coded as `coding`, framed by content-length or chunked. */
function coded(coding: string, body: Uint8Array, chunked = false): Uint8Array {
  const head =
    `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: ${coding}\r\n`;
  const parts = chunked
    ? [
      encoder.encode(`${head}transfer-encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n`),
      body,
      encoder.encode("\r\n0\r\n\r\n"),
    ]
    : [encoder.encode(`${head}content-length: ${body.length}\r\n\r\n`), body];
  return concat(parts, Infinity);
}

Deno.test("createHttp1Pool() asks for identity and decodes a gzip, deflate or br body anyway", async (t) => {
  const json = JSON.stringify({ text: "Café ☕ ".repeat(500) });
  const cases: [string, string, Uint8Array][] = [
    ["gzip", "gzip", gzipSync(json)],
    ["x-gzip", "x-gzip", gzipSync(json)],
    ["zlib deflate", "deflate", deflateSync(json)],
    ["raw deflate", "deflate", deflateRawSync(json)],
    ["br", "br", brotliCompressSync(json)],
    ["gzip then br", "gzip, br", brotliCompressSync(gzipSync(json))],
    ["identity", "identity", encoder.encode(json)],
  ];
  for (const [name, coding, body] of cases) {
    for (const chunked of [false, true]) {
      await t.step(`${name}${chunked ? ", chunked" : ""}`, async () => {
        await using server = rawServer(() => ({ bytes: coded(coding, body, chunked) }));
        using pool = createHttp1Pool(server.url);
        assert.equal((await pool.post("/", HEADERS, "{}")).body, json);
        // The connection stays usable after a coded reply.
        assert.equal((await pool.post("/", HEADERS, "{}")).body, json);
        assert.equal(server.connections, 1);
      });
    }
  }
});

Deno.test("createHttp1Pool() fails a body in an unknown coding, naming it", async () => {
  await using server = rawServer(() => ({ bytes: coded("zstd", encoder.encode("(zstd)")) }));
  using pool = createHttp1Pool(server.url);
  const error = await pool.post("/", HEADERS, "{}").then(() => null, (error) => error);
  assert.ok(error instanceof UnknownCodingError, String(error));
  assert.equal(error.coding, "zstd");
});

Deno.test("createHttp1Pool() fails a coded body that does not decode as a broken response", async () => {
  const cut = gzipSync('{"a":1}').subarray(0, 12);
  await using server = rawServer(() => ({ bytes: coded("gzip", cut) }));
  using pool = createHttp1Pool(server.url);
  const error = await pool.post("/", HEADERS, "{}").then(() => null, (error) => error);
  assert.ok(error instanceof HttpResponseError, String(error));
  assert.match(error.message, /^Cannot read response: gzip body does not decode: /);
});

Deno.test("createHttp1Pool() refuses a coded body that decodes past maxResponseBytes", async () => {
  // 10 KB of gzip that would inflate to 10 MB.
  await using server = rawServer(() => ({ bytes: coded("gzip", gzipSync(new Uint8Array(1e7))) }));
  using pool = createHttp1Pool(server.url, { maxResponseBytes: 100_000 });
  const error = await pool.post("/", HEADERS, "{}").then(() => null, (error) => error);
  assert.ok(error instanceof ResponseTooLargeError, String(error));
});

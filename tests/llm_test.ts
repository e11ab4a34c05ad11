import assert from "node:assert/strict";
import { brotliCompressSync, deflateRawSync, deflateSync, gzipSync } from "node:zlib";
import { type ChatClientOptions, createChatClient } from "../src/llm.ts";
import { LlmError } from "../src/llm_error.ts";
import { retryDelay } from "../src/retry_delay.ts";
import {
  type ChatRequestBody,
  completionResponse,
  errorResponse,
  type RespondHook,
  startOfflineLlm,
} from "../src/offline_llm.ts";
import { type FaultKind, startFakeOpenAI } from "./fake_openai.ts";
import type { ChatMessage } from "../src/types.ts";

const API_KEY = "sk-test-5ecret-k3y-0123456789";
const MESSAGES: readonly ChatMessage[] = [
  { role: "system", content: "You write thought processes." },
  { role: "user", content: "<user_message>What is 2 + 2?</user_message>\n<answer>4</answer>" },
];

function clientFor(url: string, options: Partial<ChatClientOptions> = {}) {
  return createChatClient({
    baseURL: url,
    apiKey: API_KEY,
    model: "test-model",
    timeoutMs: 5_000,
    ...options,
  });
}

/** The LlmError a call fails with; fails the test if it succeeds or throws anything else. */
async function failure(promise: Promise<unknown>): Promise<LlmError> {
  const error = await promise.then(
    () => assert.fail("expected the call to fail"),
    (error: unknown) => error,
  );
  assert.ok(error instanceof LlmError, `expected an LlmError, got ${String(error)}`);
  return error;
}

/** Asserts the key shows nowhere a user or a log could see it. */
function assertNoKey(error: LlmError): void {
  for (const text of [error.message, String(error), Deno.inspect(error), error.stack ?? ""]) {
    assert.ok(!text.includes(API_KEY), `the API key leaked: ${text}`);
  }
}

async function until(check: () => boolean, timeoutMs = 3_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) assert.fail("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function replyWith(respond: RespondHook) {
  return startOfflineLlm({ respond });
}

/** A Deno.serve server on 127.0.0.1, for replies the offline endpoint does not give. */
function serve(handler: (request: Request) => Response | Promise<Response>) {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

/** A reply that a call takes as a thought. */
function okReply(): Response {
  return completionResponse({
    model: "test-model",
    content: "<thought_process>\nok\n</thought_process>",
  });
}

Deno.test("complete() returns content, finish reason and usage", async () => {
  await using llm = await startOfflineLlm();
  const reply = await clientFor(llm.url).complete(MESSAGES);

  assert.match(
    reply.content ?? "",
    /^<thought_process>\n[^]+What is 2 \+ 2\?[^]+\n<\/thought_process>$/,
  );
  assert.equal(reply.finishReason, "stop");
  assert.ok(reply.usage && reply.usage.inputTokens > 0 && reply.usage.outputTokens > 0);
  assert.equal(reply.usage.estimated, false);
  assert.ok(reply.latencyMs >= 0);
  assert.equal((reply.raw as { object: string }).object, "chat.completion");
});

Deno.test("complete() sends the model, sampling options, messages and key", async () => {
  const seen: { body?: ChatRequestBody; auth?: string | null } = {};
  await using llm = await replyWith((body, _n, _signal, headers) => {
    seen.body = body;
    seen.auth = headers.get("authorization");
    return undefined;
  });
  const client = clientFor(llm.url, { temperature: 0.3, maxTokens: 512, topP: 0.9 });
  await client.complete(MESSAGES);

  assert.equal(seen.auth, `Bearer ${API_KEY}`);
  assert.equal(seen.body?.model, "test-model");
  assert.equal(seen.body?.temperature, 0.3);
  assert.equal(seen.body?.max_tokens, 512);
  assert.equal(seen.body?.top_p, 0.9);
  assert.equal(seen.body?.stream, undefined);
  assert.deepEqual(seen.body?.messages, MESSAGES);
});

Deno.test("complete() omits sampling options left unset", async () => {
  let body: ChatRequestBody | undefined;
  await using llm = await replyWith((request) => {
    body = request;
    return undefined;
  });
  await clientFor(llm.url).complete(MESSAGES);

  assert.ok(body);
  assert.ok(!("temperature" in body) && !("max_tokens" in body) && !("top_p" in body));
});

Deno.test("complete() returns usage null when the server sends none", async () => {
  await using llm = await replyWith(() =>
    Response.json({
      id: "x",
      object: "chat.completion",
      choices: [{ index: 0, message: { role: "assistant", content: "ok" }, finish_reason: "stop" }],
    })
  );
  const reply = await clientFor(llm.url).complete(MESSAGES);

  assert.equal(reply.content, "ok");
  assert.equal(reply.usage, null);
});

Deno.test("complete() takes usage that is no token count as none", async (t) => {
  for (
    const usage of [
      { prompt_tokens: -5, completion_tokens: 3 },
      { prompt_tokens: 5, completion_tokens: 1e308 },
      { prompt_tokens: 2.5, completion_tokens: 3 },
      { prompt_tokens: "5", completion_tokens: 3 },
    ]
  ) {
    await t.step(JSON.stringify(usage), async () => {
      await using llm = await replyWith(() =>
        Response.json({
          choices: [{
            index: 0,
            message: { role: "assistant", content: "ok" },
            finish_reason: "stop",
          }],
          usage,
        })
      );
      assert.equal((await clientFor(llm.url).complete(MESSAGES)).usage, null);
    });
  }
});

Deno.test("complete() ignores provider reasoning fields", async () => {
  await using llm = await replyWith(() =>
    Response.json({
      choices: [{
        index: 0,
        message: {
          role: "assistant",
          content: "the answer",
          reasoning: "hidden chain",
          reasoning_content: "more hidden chain",
        },
        finish_reason: "stop",
      }],
    })
  );
  const reply = await clientFor(llm.url).complete(MESSAGES);

  assert.equal(reply.content, "the answer");
});

Deno.test("complete() returns null content and finish reason when the server sends none", async () => {
  await using llm = await replyWith(() =>
    Response.json({ choices: [{ index: 0, message: { role: "assistant", content: null } }] })
  );
  const reply = await clientFor(llm.url).complete(MESSAGES);

  assert.equal(reply.content, null);
  assert.equal(reply.finishReason, null);
});

Deno.test("complete() classifies each injected fault", async (t) => {
  const cases: [FaultKind, LlmError["kind"], number | undefined, RegExp][] = [
    ["rate_limit", "transient", 429, /^upstream answered 429 Too Many Requests: Rate limit/],
    ["server_error", "transient", 500, /^upstream answered 500 Internal Server Error: /],
    ["unavailable", "transient", 503, /^upstream answered 503 Service Unavailable: /],
    ["reset", "transient", undefined, /^upstream response cut: /],
    ["invalid_json", "transient", undefined, /^upstream answered invalid JSON: /],
    ["unauthorized", "fatal", 401, /check the API key \(env var OPENAI_API_KEY\)$/],
  ];
  for (const transport of ["pooled", "fetch"] as const) {
    for (const [fault, kind, status, message] of cases) {
      await t.step(`${transport}: ${fault}`, async () => {
        await using fake = await startFakeOpenAI({ script: () => fault });
        using client = clientFor(fake.url, { transport });
        const error = await failure(client.complete(MESSAGES));

        assert.equal(error.kind, kind);
        assert.equal(error.status, status);
        assert.match(error.message, message);
        assert.equal(error.name, "LlmError");
        assertNoKey(error);
      });
    }
  }
});

Deno.test("complete() reads retry-after: 1 of a 429 as 1000 ms", async () => {
  await using fake = await startFakeOpenAI({ script: () => "rate_limit" });
  const error = await failure(clientFor(fake.url).complete(MESSAGES));

  assert.equal(error.retryAfterMs, 1000);
});

Deno.test("complete() prefers retry-after-ms and reads retry-after dates", async () => {
  const headers: Record<string, string>[] = [
    { "retry-after-ms": "250", "retry-after": "9" },
    { "retry-after": new Date(Date.now() + 30_000).toUTCString() },
    { "retry-after": "soon" },
  ];
  await using llm = await replyWith((_body, n) =>
    errorResponse(503, "busy", "server_error", headers[n - 1])
  );
  const client = clientFor(llm.url);

  assert.equal((await failure(client.complete(MESSAGES))).retryAfterMs, 250);
  const fromDate = (await failure(client.complete(MESSAGES))).retryAfterMs ?? 0;
  assert.ok(fromDate > 25_000 && fromDate <= 30_000, `got ${fromDate}`);
  assert.equal((await failure(client.complete(MESSAGES))).retryAfterMs, undefined);
});

Deno.test("complete() classifies HTTP statuses", async (t) => {
  const cases: [number, LlmError["kind"]][] = [
    [400, "rejected"],
    [413, "rejected"],
    [422, "rejected"],
    [418, "rejected"],
    [408, "transient"],
    [409, "transient"],
    [502, "transient"],
    [401, "fatal"],
    [402, "fatal"],
    [403, "fatal"],
    [404, "fatal"],
  ];
  for (const [status, kind] of cases) {
    await t.step(`${status} is ${kind}`, async () => {
      await using llm = await replyWith(() =>
        errorResponse(status, "This model's maximum context length is 8192 tokens", "error")
      );
      const error = await failure(clientFor(llm.url).complete(MESSAGES));

      assert.equal(error.kind, kind);
      assert.equal(error.status, status);
      assert.match(error.message, new RegExp(`^upstream answered ${status}\\b.*maximum context`));
    });
  }
});

Deno.test("complete() is fatal with a hint when the base URL is wrong", async () => {
  await using llm = await startOfflineLlm();
  const error = await failure(clientFor(llm.url.replace(/\/v1$/, "/v2")).complete(MESSAGES));

  assert.equal(error.kind, "fatal");
  assert.equal(error.status, 404);
  assert.match(
    error.message,
    /^upstream answered 404 Not Found: Unknown path \/v2\/chat\/completions/,
  );
  assert.match(error.message, /check the model name and the base URL http:\/\/127\.0\.0\.1:\d+$/);
});

Deno.test("complete() stops the run at a redirect, naming where it points", async (t) => {
  const cases: [
    string,
    number,
    (url: string) => Record<string, string>,
    (url: string) => string,
  ][] = [
    [
      "307 to a path",
      307,
      () => ({ location: "/v2/chat/completions?api-version=1" }),
      (url) =>
        `upstream answered 307 Temporary Redirect to ${url}/v2/chat/completions?api-version=1; ` +
        `cotfit does not follow redirects: use --base-url ${url}/v2?api-version=1`,
    ],
    [
      "308 to another origin",
      308,
      () => ({ location: "https://api.example.com/openai/v1/chat/completions" }),
      () =>
        "upstream answered 308 Permanent Redirect to " +
        "https://api.example.com/openai/v1/chat/completions; cotfit does not follow redirects: " +
        "use --base-url https://api.example.com/openai/v1",
    ],
    [
      "301 elsewhere",
      301,
      () => ({ location: "http://login.example.com/" }),
      () =>
        "upstream answered 301 Moved Permanently to http://login.example.com/; cotfit does not " +
        "follow redirects: set --base-url to the API's address",
    ],
    [
      "302 without a location",
      302,
      () => ({}),
      (url) => `upstream answered 302 Found without a Location; check the base URL ${url}`,
    ],
  ];
  for (const [name, status, headers, message] of cases) {
    await t.step(name, async () => {
      let requests = 0;
      await using server = serve(() => {
        requests++;
        return new Response(null, { status, headers: headers("") });
      });
      using client = clientFor(`${server.url}/v1`, { transport: "pooled" });
      const error = await failure(client.complete(MESSAGES));

      assert.equal(error.kind, "fatal");
      assert.equal(error.status, status);
      assert.equal(error.message, message(server.url));
      assert.equal(requests, 1);
    });
  }
  // fetch follows a redirect it can; one it cannot (no Location) stops the run as well.
  await t.step("fetch: 302 without a location", async () => {
    await using server = serve(() => new Response(null, { status: 302 }));
    using client = clientFor(`${server.url}/v1`, { transport: "fetch" });
    const error = await failure(client.complete(MESSAGES));

    assert.equal(error.kind, "fatal");
    assert.match(
      error.message,
      /^upstream answered 302 Found without a Location; check the base URL/,
    );
  });
});

Deno.test("complete() times out a request whose headers never come", async () => {
  // The hook holds the request until the server closes: the SDK's own header timeout path.
  await using llm = await replyWith((_body, _n, signal) =>
    new Promise((resolve) => signal.addEventListener("abort", () => resolve(undefined)))
  );
  const started = Date.now();
  const error = await failure(clientFor(llm.url, { timeoutMs: 200 }).complete(MESSAGES));

  assert.equal(error.kind, "transient");
  assert.match(error.message, /^upstream timed out after 200 ms at http:\/\/127\.0\.0\.1:\d+$/);
  assert.ok(Date.now() - started < 2_000);
});

Deno.test("complete() times out a hung reply and the server sees it go", async () => {
  await using fake = await startFakeOpenAI({ script: () => "hang" });
  const error = await failure(clientFor(fake.url, { timeoutMs: 200 }).complete(MESSAGES));

  assert.equal(error.kind, "transient");
  assert.match(error.message, /^upstream timed out after 200 ms/);
  await until(() => fake.stats.inFlight === 0);
  assert.equal(fake.stats.aborted, 1);
});

Deno.test("complete() times out a body that stalls after the headers", async () => {
  await using llm = await replyWith((_body, _n, signal) => {
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode('{"choices": ['));
        signal.addEventListener("abort", () => controller.close(), { once: true });
      },
    });
    return new Response(stream, { headers: { "content-type": "application/json" } });
  });
  const error = await failure(clientFor(llm.url, { timeoutMs: 200 }).complete(MESSAGES));

  assert.equal(error.kind, "transient");
  assert.match(error.message, /^upstream timed out after 200 ms/);
});

Deno.test("complete() is aborted when the caller aborts mid-request", async (t) => {
  for (const transport of ["pooled", "fetch"] as const) {
    await t.step(transport, async () => {
      await using fake = await startFakeOpenAI({ script: () => "hang" });
      using client = clientFor(fake.url, { transport });
      const controller = new AbortController();
      const call = client.complete(MESSAGES, { signal: controller.signal });
      await until(() => fake.stats.inFlight === 1);
      controller.abort();
      const error = await failure(call);

      assert.equal(error.kind, "aborted");
      assert.equal(error.status, undefined);
      await until(() => fake.stats.inFlight === 0);
      assert.equal(fake.stats.aborted, 1);
    });
  }
});

Deno.test("complete() makes sequential calls over one pooled transport", async () => {
  await using llm = await startOfflineLlm();
  using client = clientFor(llm.url, { transport: "pooled" });
  const replies = [];
  for (let i = 0; i < 5; i++) replies.push(await client.complete(MESSAGES));
  assert.deepEqual(replies.map((reply) => reply.finishReason), Array(5).fill("stop"));
  assert.equal(llm.stats.requests, 5);
});

Deno.test("createChatClient() refuses the pooled transport for an https base URL", () => {
  assert.throws(
    () => clientFor("https://api.example.com/v1", { transport: "pooled" }),
    /pooled transport needs an http: baseURL/,
  );
});

Deno.test("complete() sends nothing when the signal is already aborted", async () => {
  await using llm = await startOfflineLlm();
  const error = await failure(
    clientFor(llm.url).complete(MESSAGES, { signal: AbortSignal.abort() }),
  );

  assert.equal(error.kind, "aborted");
  assert.equal(llm.stats.requests, 0);
});

Deno.test("complete() leaves one listener on the caller's signal however many calls it makes", async () => {
  await using llm = await startOfflineLlm();
  const { signal } = new AbortController();
  let listeners = 0;
  const add = signal.addEventListener.bind(signal);
  const remove = signal.removeEventListener.bind(signal);
  signal.addEventListener = (...args: Parameters<AbortSignal["addEventListener"]>) => {
    listeners++;
    add(...args);
  };
  signal.removeEventListener = (...args: Parameters<AbortSignal["removeEventListener"]>) => {
    listeners--;
    remove(...args);
  };
  const client = clientFor(llm.url);
  for (let i = 0; i < 3; i++) await client.complete(MESSAGES, { signal });
  await Promise.all(Array.from({ length: 20 }, () => client.complete(MESSAGES, { signal })));

  // A run makes millions of calls under one signal: a listener left per call is a leak.
  assert.equal(listeners, 1);
});

Deno.test("complete() reports a refused connection as transient", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  const error = await failure(clientFor(`http://127.0.0.1:${port}/v1`).complete(MESSAGES));

  assert.equal(error.kind, "transient");
  assert.equal(
    error.message,
    `upstream unreachable: connection refused at http://127.0.0.1:${port}`,
  );
});

Deno.test("complete() treats a 200 without choices as transient", async () => {
  await using llm = await replyWith(() => Response.json({ id: "x", choices: [] }));
  const error = await failure(clientFor(llm.url).complete(MESSAGES));

  assert.equal(error.kind, "transient");
  assert.equal(error.message, "upstream answered 200 without a choice message");
});

Deno.test("complete() names the status of a success reply with no body", async (t) => {
  const replies: [string, () => Response, RegExp][] = [
    ["204", () => new Response(null, { status: 204 }), /^upstream answered 204 with no body$/],
    [
      "202 empty JSON",
      () => new Response("", { status: 202, headers: { "content-type": "application/json" } }),
      /^upstream answered 202 with no body$/,
    ],
    [
      "201 text",
      () => new Response("queued", { status: 201 }),
      /^upstream answered 201 with a body that is not JSON: queued$/,
    ],
  ];
  for (const transport of ["pooled", "fetch"] as const) {
    for (const [name, reply, message] of replies) {
      await t.step(`${transport}: ${name}`, async () => {
        await using server = serve(reply);
        using client = clientFor(`${server.url}/v1`, { transport });
        const error = await failure(client.complete(MESSAGES));

        assert.equal(error.kind, "transient");
        assert.match(error.message, message);
      });
    }
  }
});

Deno.test("complete() rejects a reply over maxResponseBytes at once, not as a cut to retry", async (t) => {
  const piece = new TextEncoder().encode(`{"filler":"${"x".repeat(16 * 1024)}",`);
  const replies: [string, () => Response][] = [
    ["declared length", () => new Response("y".repeat(100_000))],
    // A body that never ends: only the cap stops it before the timeout.
    ["endless stream", () =>
      new Response(
        new ReadableStream({
          pull: (controller) => controller.enqueue(piece),
        }),
        { headers: { "content-type": "application/json" } },
      )],
  ];
  for (const transport of ["pooled", "fetch"] as const) {
    for (const [name, reply] of replies) {
      await t.step(`${transport}: ${name}`, async () => {
        await using server = serve(reply);
        using client = clientFor(`${server.url}/v1`, {
          transport,
          maxResponseBytes: 64 * 1024,
          timeoutMs: 20_000,
        });
        const started = Date.now();
        const error = await failure(client.complete(MESSAGES));

        assert.equal(error.kind, "rejected");
        assert.equal(error.status, undefined);
        assert.equal(
          error.message,
          "upstream reply over 65536 bytes, cotfit's cap on one reply: not read further",
        );
        assert.ok(Date.now() - started < 5_000);
      });
    }
  }
});

Deno.test("complete() reads a compressed reply through either transport", async (t) => {
  const json = JSON.stringify({
    choices: [{
      message: { role: "assistant", content: "<thought_process>\nzip\n</thought_process>" },
    }],
  });
  const codings: [string, string, Uint8Array][] = [
    ["gzip", "gzip", gzipSync(json)],
    ["deflate", "deflate", deflateSync(json)],
    ["raw deflate", "deflate", deflateRawSync(json)],
    ["br", "br", brotliCompressSync(json)],
  ];
  for (const transport of ["pooled", "fetch"] as const) {
    for (const [name, coding, body] of codings) {
      // Deno's fetch asks for gzip and br, and decodes only those.
      if (transport === "fetch" && coding === "deflate") continue;
      await t.step(`${transport}: ${name}`, async () => {
        const asked: (string | null)[] = [];
        await using server = serve((request) => {
          asked.push(request.headers.get("accept-encoding"));
          return new Response(new Uint8Array(body), {
            headers: { "content-type": "application/json", "content-encoding": coding },
          });
        });
        using client = clientFor(`${server.url}/v1`, { transport });
        const reply = await client.complete(MESSAGES);

        assert.equal(reply.content, "<thought_process>\nzip\n</thought_process>");
        if (transport === "pooled") assert.deepEqual(asked, ["identity"]);
      });
    }
  }
});

Deno.test("complete() rejects a pooled reply in a coding it does not decode, naming it", async () => {
  await using server = serve(() =>
    new Response("(zstd data)", {
      headers: { "content-type": "application/json", "content-encoding": "zstd" },
    })
  );
  using client = clientFor(`${server.url}/v1`, { transport: "pooled" });
  const error = await failure(client.complete(MESSAGES));

  assert.equal(error.kind, "rejected");
  assert.equal(
    error.message,
    'upstream reply in content coding "zstd", which cotfit does not decode (it asked for identity)',
  );
});

Deno.test("complete() rejects a compressed reply that inflates past maxResponseBytes", async (t) => {
  const bomb = gzipSync(new Uint8Array(10_000_000));
  for (const transport of ["pooled", "fetch"] as const) {
    await t.step(transport, async () => {
      await using server = serve(() =>
        new Response(new Uint8Array(bomb), {
          headers: { "content-type": "application/json", "content-encoding": "gzip" },
        })
      );
      using client = clientFor(`${server.url}/v1`, { transport, maxResponseBytes: 1_000_000 });
      const error = await failure(client.complete(MESSAGES));

      assert.equal(error.kind, "rejected");
      assert.match(error.message, /^upstream reply over 1000000 bytes/);
    });
  }
});

Deno.test("complete() treats a 200 HTML page as transient", async () => {
  await using llm = await replyWith(() =>
    new Response("<html>\n<body>Proxy login for " + API_KEY + "</body></html>", {
      headers: { "content-type": "text/html" },
    })
  );
  const error = await failure(clientFor(llm.url).complete(MESSAGES));

  assert.equal(error.kind, "transient");
  assert.match(error.message, /^upstream answered 200 with a body that is not JSON: <html> <body>/);
  assertNoKey(error);
});

Deno.test("complete() never shows the API key a server echoes back", async (t) => {
  const echoes: [string, Response][] = [
    ["401 JSON", errorResponse(401, `Incorrect API key provided: ${API_KEY}`, "auth")],
    ["500 JSON", errorResponse(500, `internal: header Authorization: Bearer ${API_KEY}`, "x")],
    ["400 text", new Response(`bad request from key ${API_KEY}\nline two`, { status: 400 })],
    ["429 error object", Response.json({ error: { detail: API_KEY } }, { status: 429 })],
  ];
  for (const [name, response] of echoes) {
    await t.step(name, async () => {
      await using llm = await replyWith(() => response);
      const error = await failure(clientFor(llm.url).complete(MESSAGES));

      assertNoKey(error);
      assert.ok(!error.message.includes("\n"), "the message is one line");
      assert.match(error.message, /\*\*\*/);
    });
  }
});

Deno.test("complete() never shows a key the base URL carries in its query, echoed back", async (t) => {
  const secret = "AIzaSecret/Key+123";
  // The key percent-encoded, and pasted as is with "+" (which a query reads as a space).
  for (const written of [encodeURIComponent(secret), "Ab+Cd+SecretPlus"]) {
    for (const transport of ["pooled", "fetch"] as const) {
      await t.step(`${transport}, key=${written}`, async () => {
        const decoded = new URLSearchParams(`key=${written}`).get("key")!;
        await using server = serve((request) =>
          errorResponse(403, `Forbidden for ${request.url} (key ${decoded})`, "auth")
        );
        using client = clientFor(`${server.url}/v1?key=${written}&v=1`, { transport });
        const error = await failure(client.complete(MESSAGES));
        for (const form of [written, decoded, encodeURIComponent(decoded)]) {
          assert.ok(!error.message.includes(form), error.message);
        }
        assert.match(error.message, /key=\*\*\*/);
        // Short values (a version) are no secret and stay readable.
        assert.match(error.message, /v=1/);
      });
    }
  }
});

Deno.test("complete() cuts a long server message to one short line", async () => {
  await using llm = await replyWith(() => errorResponse(400, "too long\n".repeat(200), "x"));
  const error = await failure(clientFor(llm.url).complete(MESSAGES));

  assert.ok(!error.message.includes("\n"));
  assert.ok(error.message.length < 400, `length ${error.message.length}`);
  assert.match(error.message, /…$/);
});

Deno.test("complete() uses the given fetch for every call", async () => {
  await using llm = await startOfflineLlm();
  let calls = 0;
  const counting: typeof fetch = (input, init) => {
    calls++;
    return fetch(input, init);
  };
  const client = clientFor(llm.url, { fetch: counting });
  await client.complete(MESSAGES);
  await client.complete(MESSAGES);

  assert.equal(calls, 2);
});

Deno.test("complete() posts the model, sampling fields and messages as JSON", async () => {
  await using llm = await startOfflineLlm();
  const sent: { url: string; headers: Headers; body: string }[] = [];
  const recording: typeof fetch = (input, init) => {
    sent.push({
      url: String(input),
      headers: new Headers(init?.headers),
      body: new TextDecoder().decode(init?.body as Uint8Array),
    });
    return fetch(input, init);
  };
  const client = clientFor(`${llm.url}/`, { fetch: recording, temperature: 0.5, maxTokens: 64 });
  // Frozen leading messages (as prompts render them) are serialised once, then reused.
  const system = Object.freeze({ role: "system" as const, content: 'Say "hi"\n\u2028.' });
  for (const content of ["first", "sécond \u{1F600} 日本"]) {
    await client.complete([system, { role: "user", content }]);
  }

  assert.deepEqual(sent.map((request) => request.url), [
    `${llm.url}/chat/completions`,
    `${llm.url}/chat/completions`,
  ]);
  assert.equal(sent[0].headers.get("authorization"), `Bearer ${API_KEY}`);
  assert.equal(sent[0].headers.get("content-type"), "application/json");
  assert.deepEqual(
    sent.map((request) => request.body),
    ["first", "sécond \u{1F600} 日本"].map((content) =>
      JSON.stringify({
        model: "test-model",
        temperature: 0.5,
        max_tokens: 64,
        messages: [system, { role: "user", content }],
      })
    ),
  );
});

Deno.test("complete() appends /chat/completions to the base URL's path and keeps its query", async (t) => {
  for (const transport of ["pooled", "fetch"] as const) {
    await t.step(transport, async () => {
      const seen: string[] = [];
      await using server = serve((request) => {
        const url = new URL(request.url);
        seen.push(`${url.pathname}${url.search}`);
        return okReply();
      });
      for (
        const base of [
          "/openai/v1?api-version=2024-10-21",
          "/openai/v1/?api-version=2024-10-21",
          "/v1//",
        ]
      ) {
        using client = clientFor(`${server.url}${base}`, { transport });
        await client.complete(MESSAGES);
      }
      assert.deepEqual(seen, [
        "/openai/v1/chat/completions?api-version=2024-10-21",
        "/openai/v1/chat/completions?api-version=2024-10-21",
        "/v1/chat/completions",
      ]);
    });
  }
});

Deno.test("complete() sends each of many concurrent bodies intact, small and huge", async (t) => {
  // Bodies are encoded in one reused buffer: none may see another's bytes, and one larger than
  // that buffer (256 KiB) gets its own.
  const contents = Array.from(
    { length: 24 },
    (_, i) => `request ${String(i).padStart(3, "0")} ` + "é\u{1F600}x".repeat(i === 7 ? 70_000 : i),
  );
  for (const transport of ["pooled", "fetch"] as const) {
    await t.step(transport, async () => {
      const seen = new Map<string, string>();
      await using llm = await replyWith((body) => {
        const content = String(body.messages.at(-1)?.content);
        seen.set(content.slice(0, 12), content);
        return undefined;
      });
      using client = clientFor(llm.url, { transport });
      await Promise.all(
        contents.map((content) => client.complete([MESSAGES[0], { role: "user", content }])),
      );
      assert.equal(seen.size, contents.length);
      for (const content of contents) assert.equal(seen.get(content.slice(0, 12)), content);
    });
  }
});

Deno.test("complete() makes exactly one attempt per call", async () => {
  await using fake = await startFakeOpenAI({ script: () => "server_error" });
  await failure(clientFor(fake.url).complete(MESSAGES));

  assert.equal(fake.stats.requests, 1);
});

Deno.test("createChatClient() rejects a timeout that is not positive", () => {
  assert.throws(() => clientFor("http://127.0.0.1:1/v1", { timeoutMs: 0 }), RangeError);
  assert.throws(() => clientFor("http://127.0.0.1:1/v1", { timeoutMs: Number.NaN }), RangeError);
});

Deno.test("createChatClient() rejects a base URL that is not http(s)", () => {
  for (const baseURL of ["localhost:8000/v1", "ftp://example.com/v1", ""]) {
    assert.throws(() => clientFor(baseURL), TypeError, baseURL);
  }
});

Deno.test("complete() says so when a 401 follows an empty API key", async () => {
  let auth: string | null = null;
  await using llm = await replyWith((_body, _n, _signal, headers) => {
    auth = headers.get("authorization");
    return errorResponse(401, "Missing bearer token", "invalid_request_error");
  });
  const client = clientFor(llm.url, { apiKey: "", apiKeyEnv: "COTFIT_API_KEY" });
  const error = await failure(client.complete(MESSAGES));

  assert.equal(error.kind, "fatal");
  assert.match(error.message, /; no API key is set \(env var COTFIT_API_KEY\)$/);
  assert.equal(auth, "Bearer no-key");
});

Deno.test("retryDelay() grows exponentially with equal jitter up to maxMs", () => {
  for (let attempt = 1; attempt <= 12; attempt++) {
    const step = Math.min(30_000, 500 * 2 ** (attempt - 1));
    assert.equal(retryDelay(attempt, { random: () => 0 }), step / 2);
    const high = retryDelay(attempt, { random: () => 0.999999 });
    assert.ok(high < step && high > step * 0.99, `attempt ${attempt}: ${high}`);
  }
  assert.equal(retryDelay(3, { baseMs: 100, maxMs: 300, random: () => 0 }), 150);
});

Deno.test("retryDelay() stays within its bounds with real randomness", () => {
  for (let i = 0; i < 1_000; i++) {
    const attempt = 1 + (i % 10);
    const step = Math.min(30_000, 500 * 2 ** (attempt - 1));
    const delay = retryDelay(attempt);
    assert.ok(delay >= step / 2 && delay < step, `attempt ${attempt}: ${delay}`);
  }
});

Deno.test("retryDelay() honours retryAfterMs, capped at 60 s", () => {
  assert.equal(retryDelay(1, { retryAfterMs: 1_000, random: () => 0 }), 1_000);
  assert.equal(retryDelay(9, { retryAfterMs: 1_000, random: () => 0 }), 1_000);
  const jittered = retryDelay(1, { retryAfterMs: 1_000, random: () => 0.999 });
  assert.ok(jittered >= 1_000 && jittered <= 1_100);
  assert.equal(retryDelay(1, { retryAfterMs: 3_600_000, random: () => 0.5 }), 60_000);
  assert.equal(retryDelay(1, { retryAfterMs: 0, random: () => 0.5 }), 0);
});

Deno.test("retryDelay() rejects an attempt below 1", () => {
  assert.throws(() => retryDelay(0), RangeError);
  assert.throws(() => retryDelay(1.5), RangeError);
  assert.throws(() => retryDelay(Number.NaN), RangeError);
});

/** A 400 as OpenAI's reasoning models (o-series, GPT-5) answer a field they do not take. */
function refusal(param: string, message: string, code: string): Response {
  const body = { error: { message, type: "invalid_request_error", param, code } };
  return Response.json(body, { status: 400 });
}

Deno.test("complete() renames max_tokens and drops temperature when the model refuses them", async () => {
  const bodies: ChatRequestBody[] = [];
  await using llm = await replyWith((body) => {
    bodies.push(body);
    if ("max_tokens" in body) {
      return refusal(
        "max_tokens",
        "Unsupported parameter: 'max_tokens' is not supported with this model. " +
          "Use 'max_completion_tokens' instead.",
        "unsupported_parameter",
      );
    }
    if ("temperature" in body && body.temperature !== 1) {
      return refusal(
        "temperature",
        `Unsupported value: 'temperature' does not support ${body.temperature} with this model. ` +
          "Only the default (1) value is supported.",
        "unsupported_value",
      );
    }
    if (body.messages.length > 2) {
      return refusal("messages", "This model's maximum context length is 8 tokens.", "too_long");
    }
    return undefined;
  });
  const notices: string[] = [];
  using client = clientFor(llm.url, {
    temperature: 0.7,
    maxTokens: 512,
    topP: 0.9,
    onAdapt: (notice) => notices.push(notice),
  });
  // Calls in flight together all meet the refusal; each is sent again and succeeds.
  const replies = await Promise.all(Array.from({ length: 5 }, () => client.complete(MESSAGES)));
  assert.ok(replies.every((reply) => reply.finishReason === "stop"));
  assert.deepEqual(notices, [
    'the endpoint takes "max_completion_tokens" instead of "max_tokens" for model test-model: ' +
    "sending that",
    "model test-model takes only its default temperature: sending none (--temperature 0.7 is " +
    "not used)",
  ]);
  const last = bodies.at(-1)!;
  assert.equal(last.max_completion_tokens, 512);
  assert.equal(last.top_p, 0.9);
  assert.ok(!("max_tokens" in last) && !("temperature" in last));
  // Later calls send the changed request first time.
  const before = bodies.length;
  await client.complete(MESSAGES);
  assert.equal(bodies.length, before + 1);
  // Any other 400 rejects the call, with no resend.
  const error = await failure(client.complete([...MESSAGES, { role: "user", content: "More." }]));
  assert.equal(error.kind, "rejected");
  assert.equal(bodies.length, before + 2);
  assert.equal(notices.length, 2);
});

Deno.test("complete() sends extraBody's fields with the request's own", async () => {
  let seen: ChatRequestBody | undefined;
  await using llm = await replyWith((body) => {
    seen = body;
    return undefined;
  });
  using client = clientFor(llm.url, {
    maxTokens: 64,
    extraBody: { chat_template_kwargs: { enable_thinking: false }, top_k: 20 },
  });
  await client.complete(MESSAGES);
  assert.deepEqual(Object.keys(seen!), [
    "model",
    "max_tokens",
    "chat_template_kwargs",
    "top_k",
    "messages",
  ]);
  assert.deepEqual(seen!.chat_template_kwargs, { enable_thinking: false });
  assert.equal(seen!.top_k, 20);
});

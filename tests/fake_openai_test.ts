import assert from "node:assert/strict";
import { evenFaults, FAULT_KINDS, type FaultKind, startFakeOpenAI } from "./fake_openai.ts";
import { startOfflineLlm } from "../src/offline_llm.ts";
import { offlineThought } from "../src/offline_thought.ts";

const SCRIPT = new URL("./fake_openai.ts", import.meta.url).pathname;
const PROMPT = "<system_prompt>Be brief.</system_prompt>\n" +
  "<user_message>How do I reverse a list in Python? I tried sorted().</user_message>\n" +
  "<answer>Use slicing:\n```python\nitems[::-1]\n```\nor `items.reverse()` in place.</answer>";

function chatBody(content = PROMPT, model = "test-model"): string {
  return JSON.stringify({ model, messages: [{ role: "user", content }] });
}

function post(url: string, init: RequestInit = {}): Promise<Response> {
  return fetch(`${url}/chat/completions`, { method: "POST", body: chatBody(), ...init });
}

/** What a client sees of one reply: status, finish reason and content, or how it failed. */
async function outcome(url: string): Promise<string> {
  const response = await post(url);
  let text: string;
  try {
    text = await response.text();
  } catch {
    return `${response.status} cut`;
  }
  try {
    const body = JSON.parse(text);
    const choice = body.choices?.[0];
    return choice
      ? `${response.status} ${choice.finish_reason} ${choice.message.content.slice(0, 20)}`
      : `${response.status} ${body.error?.type}`;
  } catch {
    return `${response.status} not json`;
  }
}

async function until(check: () => boolean, timeoutMs = 3_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) assert.fail("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

Deno.test("startFakeOpenAI() draws the same faults for the same seed", async () => {
  const faults = { server_error: 0.2, empty: 0.2, reset: 0.1 };
  const run = async (seed: number) => {
    await using fake = await startFakeOpenAI({ seed, faults });
    const outcomes: string[] = [];
    for (let i = 0; i < 60; i++) outcomes.push(await outcome(fake.url));
    return { outcomes, counts: { ...fake.stats.faults } };
  };
  const first = await run(42);
  const again = await run(42);
  const other = await run(43);

  assert.deepEqual(again.outcomes, first.outcomes);
  assert.notDeepEqual(other.outcomes, first.outcomes);
  const injected = first.counts.server_error + first.counts.empty + first.counts.reset;
  assert.ok(injected >= 15 && injected <= 45, `${injected} faults in 60 requests at p = 0.5`);
  assert.equal(
    first.outcomes.filter((o) => o === "500 server_error").length,
    first.counts.server_error,
  );
  assert.equal(first.outcomes.filter((o) => o === "200 cut").length, first.counts.reset);
});

Deno.test("startFakeOpenAI() gives the n-th request the same fault under concurrency", async () => {
  const faults = evenFaults(0.5);
  delete faults.hang;
  const counts = async (concurrency: number) => {
    await using fake = await startFakeOpenAI({ seed: 7, faults });
    for (let sent = 0; sent < 80; sent += concurrency) {
      await Promise.all(Array.from({ length: concurrency }, () => outcome(fake.url)));
    }
    return { ...fake.stats.faults };
  };

  assert.deepEqual(await counts(8), await counts(1));
});

Deno.test("startFakeOpenAI() follows its script and counts each fault", async () => {
  const kinds = FAULT_KINDS.filter((kind) => kind !== "hang");
  await using fake = await startFakeOpenAI({ script: (n) => kinds[n - 1] });
  const seen: string[] = [];
  for (let i = 0; i <= kinds.length; i++) seen.push(await outcome(fake.url));

  assert.deepEqual(seen, [
    "429 rate_limit_error",
    "500 server_error",
    "503 server_error",
    "200 cut",
    "200 not json",
    '200 stop The user asks: "How ',
    "200 length <thought_process>\nI ",
    "200 stop ",
    "200 stop I'm sorry, but I can",
    "401 invalid_request_error",
    "200 stop <thought_process>\nTh",
  ]);
  assert.equal(fake.stats.requests, kinds.length + 1);
  for (const kind of kinds) assert.equal(fake.stats.faults[kind], 1, kind);
  assert.equal(fake.stats.faults.hang, 0);
  assert.equal(fake.stats.inFlight, 0);
});

Deno.test("startFakeOpenAI() sends the fault details clients depend on", async () => {
  const script = (n: number): FaultKind =>
    (["rate_limit", "unauthorized", "runaway"] as const)[n - 1];
  await using fake = await startFakeOpenAI({ script });

  const limited = await post(fake.url);
  await limited.body?.cancel();
  assert.equal(limited.headers.get("retry-after"), "1");

  const unauthorized = await post(fake.url, { headers: { authorization: "Bearer sk-echoed" } });
  assert.match((await unauthorized.json()).error.message, /sk-echoed/);

  const runaway = await (await post(fake.url)).json();
  assert.equal(runaway.choices[0].finish_reason, "length");
  assert.ok(!runaway.choices[0].message.content.includes("</thought_process>"));
});

Deno.test("startFakeOpenAI() no_tags answers a thought without its tags", async () => {
  await using fake = await startFakeOpenAI({ script: () => "no_tags" });
  const content = (await (await post(fake.url)).json()).choices[0].message.content;

  assert.ok(!content.includes("<thought_process>"));
  assert.equal(`<thought_process>\n${content}\n</thought_process>`, offlineThought(PROMPT));
});

Deno.test("startFakeOpenAI() counts a client abort and drops inFlight to 0", async () => {
  await using fake = await startFakeOpenAI({ script: () => "hang" });
  const controller = new AbortController();
  const response = await post(fake.url, {
    body: chatBody(PROMPT.repeat(20)),
    signal: controller.signal,
  });
  assert.equal(response.status, 200);
  assert.equal(fake.stats.inFlight, 1);

  const body = response.text().catch((error: Error) => error.name);
  controller.abort();
  assert.equal(await body, "AbortError");
  await until(() => fake.stats.inFlight === 0);
  assert.equal(fake.stats.aborted, 1);
  assert.equal(fake.stats.maxInFlight, 1);
});

Deno.test("startFakeOpenAI() ends a latency wait when the client aborts", async () => {
  await using fake = await startFakeOpenAI({ latencyMs: 60_000 });
  const controller = new AbortController();
  const response = await post(fake.url, {
    body: chatBody(PROMPT.repeat(20)),
    signal: controller.signal,
  });
  const body = response.text().catch((error: Error) => error.name);
  controller.abort();
  await body;

  // A request body well over a few hundred bytes: Deno then misses the disconnect unless the
  // server waits in the response body, so this checks the design, not just the happy path.
  await until(() => fake.stats.inFlight === 0);
  assert.equal(fake.stats.aborted, 1);
});

Deno.test("startFakeOpenAI() tracks concurrent requests", async () => {
  await using fake = await startFakeOpenAI({ latencyMs: 100 });
  const replies = await Promise.all(Array.from({ length: 5 }, () => outcome(fake.url)));

  assert.ok(replies.every((reply) => reply.startsWith("200 stop <thought_process>")));
  assert.equal(fake.stats.requests, 5);
  assert.equal(fake.stats.maxInFlight, 5);
  assert.equal(fake.stats.inFlight, 0);
  assert.equal(fake.stats.aborted, 0);
});

Deno.test("startFakeOpenAI() close() ends hung replies", async () => {
  const fake = await startFakeOpenAI({ script: () => "hang" });
  const response = await post(fake.url);
  const body = response.text().catch(() => "cut");
  await fake.close();

  assert.equal(await body, "");
  assert.equal(fake.stats.inFlight, 0);
  assert.equal(fake.stats.aborted, 0);
});

Deno.test("startFakeOpenAI() setDown() answers 503 until it is lifted", async () => {
  await using fake = await startFakeOpenAI();
  fake.setDown(true);
  const down = [await outcome(fake.url), await outcome(fake.url)];
  fake.setDown(false);
  const up = await outcome(fake.url);

  assert.deepEqual(down, ["503 server_error", "503 server_error"]);
  assert.match(up, /^200 stop/);
  assert.equal(fake.stats.outage, 2);
});

Deno.test("startFakeOpenAI() records bodies only when asked", async () => {
  await using recording = await startFakeOpenAI({ recordBodies: true });
  await using silent = await startFakeOpenAI();
  await outcome(recording.url);
  await outcome(silent.url);

  assert.equal(recording.bodies.length, 1);
  assert.equal(recording.bodies[0].model, "test-model");
  assert.equal(recording.bodies[0].messages[0].content, PROMPT);
  assert.equal(silent.bodies.length, 0);
});

Deno.test("startFakeOpenAI() rejects impossible fault probabilities", async () => {
  await assert.rejects(startFakeOpenAI({ faults: { reset: 1.5 } }), RangeError);
  await assert.rejects(startFakeOpenAI({ faults: { reset: 0.6, empty: 0.6 } }), RangeError);
});

Deno.test("evenFaults() spreads the rate over every fault but unauthorized", () => {
  const faults = evenFaults(0.3);

  assert.equal(Object.keys(faults).length, FAULT_KINDS.length - 1);
  assert.equal(faults.unauthorized, undefined);
  const total = Object.values(faults).reduce((sum, p) => sum + p, 0);
  assert.ok(Math.abs(total - 0.3) < 1e-9);
});

Deno.test("fake_openai.ts script prints its URL, serves, and prints stats on SIGTERM", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", "--allow-net=127.0.0.1", SCRIPT, "--port", "0", "--seed", "1"],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).values();
  let buffered = "";
  const nextLine = async (): Promise<string> => {
    while (!buffered.includes("\n")) {
      const { value, done } = await lines.next();
      if (done) return buffered;
      buffered += value;
    }
    const end = buffered.indexOf("\n");
    const line = buffered.slice(0, end);
    buffered = buffered.slice(end + 1);
    return line;
  };

  const listening = await nextLine();
  assert.match(listening, /^listening http:\/\/127\.0\.0\.1:\d+\/v1$/);
  const url = listening.slice("listening ".length);
  assert.match(await outcome(url), /^200 stop <thought_process>/);
  child.kill("SIGTERM");
  const stats = JSON.parse(await nextLine());
  const status = await child.status;
  await child.stderr.cancel();

  assert.equal(status.code, 0);
  assert.equal(stats.requests, 1);
  assert.equal(stats.inFlight, 0);
  assert.equal(await nextLine(), "");
});

Deno.test("fake_openai.ts script rejects a bad flag with exit code 2", async () => {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", "--allow-net=127.0.0.1", SCRIPT, "--fault-rate", "2"],
  }).output();

  assert.equal(code, 2);
  assert.equal(stdout.length, 0);
  assert.match(new TextDecoder().decode(stderr), /^error: Cannot parse --fault-rate "2"/);
});

Deno.test("startOfflineLlm() answers the same request with the same thought", async () => {
  await using llm = await startOfflineLlm();
  const first = await (await post(llm.url)).json();
  const second = await (await post(llm.url)).json();

  assert.equal(first.choices[0].message.content, second.choices[0].message.content);
  assert.equal(first.object, "chat.completion");
  assert.equal(first.model, "test-model");
  assert.equal(first.choices[0].message.role, "assistant");
  const { prompt_tokens, completion_tokens, total_tokens } = first.usage;
  assert.ok(prompt_tokens > 0 && completion_tokens > 0);
  assert.equal(total_tokens, prompt_tokens + completion_tokens);
});

Deno.test("startOfflineLlm() serves /v1/models and 404s elsewhere", async () => {
  await using llm = await startOfflineLlm();
  const models = await (await fetch(`${llm.url}/models`)).json();
  const missing = await fetch(`${llm.url}/embeddings`, { method: "POST", body: "{}" });
  const wrongMethod = await fetch(`${llm.url}/chat/completions`);

  assert.equal(models.object, "list");
  assert.equal(models.data[0].object, "model");
  assert.equal(missing.status, 404);
  assert.equal((await missing.json()).error.message, "Unknown path /v1/embeddings");
  assert.equal(wrongMethod.status, 405);
  await wrongMethod.body?.cancel();
});

Deno.test("startOfflineLlm() answers 400 to a body that is not a chat request", async () => {
  await using llm = await startOfflineLlm();
  const bodies = [
    "not json",
    "[]",
    '{"model":"m","messages":[]}',
    '{"messages":[{"role":"user"}]}',
  ];
  for (const body of bodies) {
    const response = await fetch(`${llm.url}/chat/completions`, { method: "POST", body });
    assert.equal(response.status, 400, body);
    assert.match((await response.json()).error.message, /^Cannot (parse|read) request/);
  }
  assert.equal(llm.stats.inFlight, 0);
});

Deno.test("startOfflineLlm() delays replies by latencyMs", async (t) => {
  for (const trackDisconnects of [true, false]) {
    await t.step(`trackDisconnects ${trackDisconnects}`, async () => {
      await using llm = await startOfflineLlm({ latencyMs: 150, trackDisconnects });
      const started = Date.now();
      assert.match(await outcome(llm.url), /^200 stop <thought_process>/);

      assert.ok(Date.now() - started >= 140, `took ${Date.now() - started} ms`);
      assert.equal(llm.stats.inFlight, 0);
    });
  }
});

Deno.test("startOfflineLlm() close() ends untracked latency waits at once", async () => {
  const llm = await startOfflineLlm({ latencyMs: 60_000, trackDisconnects: false });
  const reply = outcome(llm.url);
  await until(() => llm.stats.inFlight === 1);
  const started = Date.now();
  await llm.close();

  assert.match(await reply, /^200 stop/);
  assert.ok(Date.now() - started < 5_000);
});

Deno.test("offlineThought() describes the answer without quoting it", () => {
  const thought = offlineThought(PROMPT);

  assert.match(thought, /^<thought_process>\n.+\n<\/thought_process>$/s);
  assert.match(thought, /The user asks: "How do I reverse a list in Python\?"/);
  assert.match(thought, /code example/);
  assert.match(thought, /system prompt/);
  assert.ok(!thought.includes("items[::-1]") && !thought.includes("reverse()"));
  const sentences = thought.split(/(?<=[.?!]"?)\s+(?=[A-Z])/).length;
  assert.ok(sentences >= 2 && sentences <= 5, `${sentences} sentences`);
});

Deno.test("offlineThought() notices steps, lists, history and tool results", () => {
  const steps = offlineThought(
    "<user_message>Set up?</user_message><answer>1. Install\n2. Run</answer>",
  );
  const list = offlineThought(
    "<user_message>Options?</user_message><answer>- red\n- blue</answer>",
  );
  const history = offlineThought("<history>user: hi</history><user_message>And?</user_message>");
  const tools = offlineThought(
    "<history>x</history><user_message>Weather?</user_message><tool_activity>sunny</tool_activity>",
  );

  assert.match(steps, /numbered steps/);
  assert.match(list, /as a list/);
  assert.match(history, /earlier exchange/);
  assert.match(tools, /tool results/);
});

Deno.test("offlineThought() falls back to the whole text and strips fake tags", () => {
  const plain = offlineThought("Tell me </thought_process> a joke. Please.");
  const empty = offlineThought("");

  assert.match(plain, /The user asks: "Tell me \/thought_process a joke\."/);
  assert.equal(plain.split("</thought_process>").length, 2);
  assert.match(empty, /no explicit question/);
});

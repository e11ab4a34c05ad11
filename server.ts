#!/usr/bin/env -S deno run --no-prompt --allow-read --allow-write --allow-net --allow-env
/**
 * cotfit server: a Hono app that rephrases JSONL sent over HTTP and streams the records back as
 * they are done, with the generation flags, environment and config file of the CLI.
 *
 * ```sh
 * deno task serve --model gpt-4o-mini        # or: cotfit serve ...; http://127.0.0.1:8787
 * curl -sN -X POST -T - -H 'content-type: application/x-ndjson' \
 *   http://127.0.0.1:8787/v1/rephrase < in.jsonl > out.jsonl
 * ```
 *
 * Routes:
 * - `POST /v1/rephrase`: JSONL body (`application/x-ndjson`, `application/jsonl`, `text/plain`
 *   or none), NDJSON response streamed line by line; query `cot_preface`, `cot_suffix`,
 *   `rejects=omit`.
 * - `GET /healthz`: liveness, and whether the upstream answered recently (no token needed).
 * - `GET /metrics`: Prometheus text.
 *
 * With a token (`--token`, env `COTFIT_TOKEN`) `/v1/*` and `/metrics` need
 * `Authorization: Bearer <token>`. Without one the server only listens on a loopback host,
 * unless `--insecure-no-auth`.
 *
 * ## Permissions
 * - `--allow-net`: the port it listens on and the LLM endpoint
 *   (e.g. `--allow-net=127.0.0.1:8787,api.openai.com`).
 * - `--allow-read`: the prompt and config files, and the `--cache` file.
 * - `--allow-write`: only for `--cache` and `--debug-log`.
 * - `--allow-env`: `OPENAI_*`, `COTFIT_*`, the variable named by `--api-key-env`, and
 *   `LOG_TOKENS`, `LOG_STREAM` (read by the `yaml` package), as `deno task serve` grants.
 *
 * @module
 */

import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import type { Options } from "./src/config.ts";
import type { ContentCoding } from "./src/decompress.ts";
import { createEngine, type Engine } from "./src/engine.ts";
import { EXIT } from "./src/run.ts";
import { isLoopbackHost } from "./src/server_access.ts";
import { requireBearerToken } from "./src/server_auth.ts";
import { jsonError } from "./src/server_errors.ts";
import { UpstreamHealth } from "./src/server_health.ts";
import { listen, type Listener } from "./src/server_listen.ts";
import { renderMetrics, RequestCounters } from "./src/server_metrics.ts";
import { rephraseBody } from "./src/server_rephrase.ts";
import { openAtomicFile } from "./src/sink.ts";
import { WriteError } from "./src/write_error.ts";

/** The settings {@linkcode createApp} reads: a subset of the resolved {@linkcode Options}. */
export type AppSettings = Pick<
  Options,
  | "token"
  | "maxRequests"
  | "requestConcurrency"
  | "cotPreface"
  | "cotSuffix"
  | "historyTokens"
  | "maxLineBytes"
  | "prices"
>;

/** Options of {@linkcode createApp}. */
export interface AppOptions {
  /** The one engine every request shares: cache, dedupe, global call cap, usage meter. */
  engine: Engine;
  /** Resolved options (or just the fields in {@linkcode AppSettings}). */
  options: AppSettings;
  /**
   * Upstream health, shared with whoever else sees failures (the engine's notices).
   *
   * @default {a new one}
   */
  health?: UpstreamHealth;
  /** Graceful shutdown: new requests get 503, bodies still arriving are cut, records finish. */
  stop?: AbortSignal;
  /** Forced shutdown: every response ends now, its LLM calls aborted. */
  halt?: AbortSignal;
  /**
   * Where unexpected errors are reported, one line per call.
   *
   * @default {nowhere}
   */
  log?: (line: string) => void;
  /**
   * The wall clock, epoch milliseconds.
   *
   * @default {Date.now}
   */
  now?: () => number;
}

/**
 * Content types a rephrase body may declare; none at all (as `curl -T` sends) is fine too.
 * `application/json`: a JSON array of records reads as well. Not form types: `curl -d` strips a
 * file's newlines before sending it as `application/x-www-form-urlencoded`.
 */
const JSONL_TYPES = new Set([
  "application/x-ndjson",
  "application/jsonl",
  "text/plain",
  "application/json",
]);
const QUERY_KEYS = ["cot_preface", "cot_suffix", "rejects"];
const NDJSON_HEADERS = {
  "content-type": "application/x-ndjson; charset=utf-8",
  "cache-control": "no-store",
  "x-content-type-options": "nosniff",
  // Tells nginx-style proxies to pass each line on at once rather than buffer the response.
  "x-accel-buffering": "no",
} as const;
const PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8";
const NOTICE_INTERVAL_MS = 5000;
/** After a second signal, how long clients get to read the error lines before being cut off. */
const HALT_GRACE_MS = 2000;

/**
 * Builds the server's Hono app. The listener is not its business: hand `app.fetch` to
 * `listen()` (src/server_listen.ts) or `Deno.serve`, or call `app.request()` in tests.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { createApp } from "./server.ts";
 * import { resolveOptions } from "./src/config.ts";
 * import { createEngine } from "./src/engine.ts";
 *
 * const options = resolveOptions({
 *   flags: { model: "m", token: "s3cret" },
 *   positionals: ["serve"],
 *   env: {},
 * });
 * const engine = await createEngine(options, { cachePath: null, now: () => performance.now() });
 * const app = createApp({ engine, options });
 * assert.equal((await (await app.request("/healthz")).json()).status, "ok");
 * const denied = await app.request("/v1/rephrase", { method: "POST", body: "" });
 * assert.equal(denied.status, 401);
 * await engine.close();
 * ```
 *
 * @param appOptions The engine, the settings, and the shutdown signals.
 * @returns The app.
 * @throws {TypeError} When the token cannot be sent as a bearer token.
 */
export function createApp(appOptions: AppOptions): Hono {
  const { engine, options, stop, halt } = appOptions;
  const health = appOptions.health ?? new UpstreamHealth();
  const now = appOptions.now ?? Date.now;
  const log = appOptions.log ?? (() => {});
  const counters = new RequestCounters();
  const startedMs = now();
  const app = new Hono();
  let lastWriteError: string | null = null;

  app.onError((error, c) => {
    if (error instanceof HTTPException) {
      if (error.status === 401) counters.error("unauthorized");
      return error.getResponse();
    }
    counters.error("internal_error");
    log(`error: ${c.req.method} ${c.req.path}: ${error.stack ?? error.message}`);
    return jsonError(500, "internal error");
  });
  app.notFound((c) => {
    counters.error("not_found");
    return jsonError(404, `no route ${c.req.method} ${c.req.path}; try POST /v1/rephrase`);
  });

  if (options.token !== undefined) {
    const auth = requireBearerToken(options.token);
    app.use("/v1/*", auth);
    app.use("/metrics", auth);
  }

  app.get("/healthz", (c) => {
    health.observe(engine.meter.snapshot(performance.now()));
    const upstream = health.status();
    return c.json({
      status: "ok",
      uptime_seconds: Math.round((now() - startedMs) / 1000),
      requests_active: counters.active,
      upstream: {
        state: upstream.state,
        last_success: isoOrNull(upstream.lastSuccessMs),
        last_failure: isoOrNull(upstream.lastFailureMs),
      },
    });
  });

  app.get("/metrics", () => {
    const usage = engine.meter.snapshot(performance.now());
    health.observe(usage);
    const text = renderMetrics({
      requests: counters.snapshot(),
      usage,
      cost: engine.meter.cost(options.prices),
      callsInFlight: engine.limiter.active,
      callsWaiting: engine.limiter.waiting,
      upstream: health.status(),
    });
    return new Response(text, { headers: { "content-type": PROMETHEUS_TYPE } });
  });

  app.post("/v1/rephrase", (c) => {
    const request = c.req.raw;
    const type = request.headers.get("content-type");
    if (type !== null && !JSONL_TYPES.has(mediaType(type))) {
      counters.error("unsupported_media_type");
      return jsonError(
        415,
        `Cannot read content type ${JSON.stringify(type.slice(0, 100))}: send JSONL as ` +
          "application/x-ndjson, application/jsonl or text/plain, or a JSON array as " +
          "application/json (with curl: -T FILE; -d and --data-binary send a form type)",
      );
    }
    const coding = contentCoding(request.headers.get("content-encoding"));
    if (coding === null) {
      counters.error("unsupported_media_type");
      return jsonError(
        415,
        `Cannot read content encoding ${
          JSON.stringify(request.headers.get("content-encoding")!.slice(0, 100))
        }: send the body as is, or as gzip, deflate or br`,
      );
    }
    const query = readQuery(new URL(request.url), options);
    if (typeof query === "string") {
      counters.error("bad_request");
      return jsonError(400, query);
    }
    if (stop?.aborted || halt?.aborted) {
      counters.error("shutting_down");
      return jsonError(503, "server is shutting down", { "retry-after": "5" });
    }
    if (counters.active >= options.maxRequests) {
      counters.error("busy");
      return jsonError(
        429,
        `server busy: ${counters.active} requests in progress, the most it takes; retry later`,
        { "retry-after": "1" },
      );
    }
    counters.started();
    const body = rephraseBody(request.body, {
      engine,
      framing: query.framing,
      omitRejects: query.omitRejects,
      requestConcurrency: options.requestConcurrency,
      historyTokens: options.historyTokens,
      maxLineBytes: options.maxLineBytes,
      coding,
      stop,
      halt,
      health,
      onEnd(kind) {
        counters.ended();
        if (kind !== null) counters.error(kind);
      },
      onInternalError(error) {
        log(`error: POST /v1/rephrase: ${error instanceof Error ? error.stack : String(error)}`);
      },
      onWriteError(error) {
        // A cache that failed refuses every later put: one line, not one per request.
        if (error.message === lastWriteError) return;
        lastWriteError = error.message;
        log(`error: ${error.message}`);
      },
    });
    return new Response(body, { headers: NDJSON_HEADERS });
  });

  app.all("/v1/rephrase", () => {
    counters.error("method_not_allowed");
    return jsonError(405, "use POST (with curl -T, add -X POST)", { allow: "POST" });
  });

  return app;
}

/** Hooks of {@linkcode serve}, for embedding and tests. */
export interface ServeHooks {
  /** Aborting it starts a graceful shutdown, as SIGINT or SIGTERM does. */
  signal?: AbortSignal;
  /**
   * Where the listening line, notices and errors go, one line per call.
   *
   * @default {stderr}
   */
  log?: (line: string) => void;
}

/**
 * Runs the server until SIGINT or SIGTERM: one engine for all requests (the cache is
 * `--cache PATH` when given, else in memory, which still dedupes), the Hono app on `host:port`
 * through `listen()` (node:http, for upload backpressure that Deno.serve 2.9 lacks), and
 * `cotfit serve listening on http://HOST:PORT` on stderr once ready.
 *
 * The first signal stops accepting, cuts bodies still arriving, finishes the records already
 * read and closes the engine; a second one aborts those records.
 *
 * @param options Resolved options of `cotfit serve`.
 * @param hooks Log and shutdown overrides.
 * @returns 0 after a graceful shutdown, 130 after a forced one, 2 when it cannot start (no
 *   token on a non-loopback host, bad prompt or cache, port taken) or when, closing, its cache or
 *   debug log cannot be written.
 */
export async function serve(options: Options, hooks: ServeHooks = {}): Promise<number> {
  const log = hooks.log ?? ((line: string) => console.error(line));
  if (options.token === undefined && !options.insecureNoAuth && !isLoopbackHost(options.host)) {
    log(
      `error: no token for serve on non-loopback host ${options.host}: set COTFIT_TOKEN ` +
        "(or --token), or pass --insecure-no-auth",
    );
    return EXIT.usage;
  }

  const health = new UpstreamHealth();
  const stop = new AbortController();
  const halt = new AbortController();
  // Every call waiting on a down upstream sends a notice: show one per interval.
  let lastNoticeMs = -Infinity;
  let unshown = 0;
  let engine: Engine;
  let app: Hono;
  try {
    engine = await createEngine(options, {
      cachePath: options.noCache ? null : options.cache,
      debugLog: options.debugLog ? await openAtomicFile(options.debugLog) : null,
      notice(text) {
        health.failed();
        const now = performance.now();
        if (now - lastNoticeMs < NOTICE_INTERVAL_MS) {
          unshown += 1;
          return;
        }
        log(`warning: ${text}${unshown > 0 ? ` (and ${unshown} more like it)` : ""}`);
        lastNoticeMs = now;
        unshown = 0;
      },
      now: () => performance.now(),
    });
  } catch (error) {
    log(`error: Cannot start the server: ${messageOf(error)}`);
    return EXIT.usage;
  }
  let server: Listener;
  try {
    app = createApp({ engine, options, health, stop: stop.signal, halt: halt.signal, log });
    server = await listen(app.fetch, { hostname: options.host, port: options.port });
  } catch (error) {
    await engine.close();
    log(`error: Cannot listen on ${options.host} port ${options.port}: ${messageOf(error)}`);
    return EXIT.usage;
  }
  log(`cotfit serve listening on ${urlOf(server.addr)}`);

  let signals = 0;
  let forceClose: ReturnType<typeof setTimeout> | undefined;
  const onSignal = () => {
    signals += 1;
    if (signals === 1) {
      log("shutting down: finishing the records in flight (signal again to abort them)");
      stop.abort();
      server.shutdown().catch((error) => log(`error: shutdown: ${messageOf(error)}`));
    } else if (signals === 2) {
      log("shutting down now: aborting the records in flight");
      halt.abort();
      // Their error lines go out if clients read them; a client that does not read would hold
      // the shutdown forever, so connections still open after a moment are closed.
      forceClose = setTimeout(() => server.abort(), HALT_GRACE_MS);
    }
  };
  const signalNames: Deno.Signal[] = Deno.build.os === "windows"
    ? ["SIGINT", "SIGBREAK"]
    : ["SIGINT", "SIGTERM"];
  for (const name of signalNames) Deno.addSignalListener(name, onSignal);
  hooks.signal?.addEventListener("abort", onSignal, { once: true });
  if (hooks.signal?.aborted) onSignal();
  let unwritten = false;
  try {
    await server.finished;
  } finally {
    clearTimeout(forceClose);
    for (const name of signalNames) Deno.removeSignalListener(name, onSignal);
    hooks.signal?.removeEventListener("abort", onSignal);
    // Closing writes the cache's last puts and the debug log: a full disk is said, not thrown.
    await engine.close().catch((error) => {
      if (!(error instanceof WriteError)) throw error;
      log(`error: ${error.message}`);
      unwritten = true;
    });
  }
  log("cotfit serve stopped");
  if (unwritten) return EXIT.usage;
  return halt.signal.aborted ? EXIT.interrupted : EXIT.ok;
}

interface RephraseQuery {
  framing: { preface: string; suffix: string };
  omitRejects: boolean;
}

/** The per-request options in the query string, or why they are wrong. */
function readQuery(url: URL, options: AppSettings): RephraseQuery | string {
  // URLSearchParams turns bytes that are not UTF-8 into U+FFFD: a preface would change silently.
  try {
    decodeURIComponent(url.search.replaceAll("+", " "));
  } catch {
    return "the query string is not percent-encoded UTF-8";
  }
  const params = url.searchParams;
  for (const key of new Set(params.keys())) {
    if (!QUERY_KEYS.includes(key)) {
      return `unknown query parameter ${JSON.stringify(key.slice(0, 60))} ` +
        `(known: ${QUERY_KEYS.join(", ")})`;
    }
    if (params.getAll(key).length > 1) return `query parameter ${key} is given more than once`;
  }
  const rejects = params.get("rejects") ?? "include";
  if (rejects !== "include" && rejects !== "omit") {
    return `query parameter rejects must be include or omit, got ${
      JSON.stringify(rejects.slice(0, 60))
    }`;
  }
  return {
    framing: {
      preface: params.get("cot_preface") ?? options.cotPreface,
      suffix: params.get("cot_suffix") ?? options.cotSuffix,
    },
    omitRejects: rejects === "omit",
  };
}

/**
 * The one coding a `Content-Encoding` names (`identity` aside), `"sniff"` for none, `null` for one
 * cotfit cannot decode or several in a row.
 */
function contentCoding(header: string | null): ContentCoding | "sniff" | null {
  if (header === null) return "sniff";
  const codings = header.split(",").map((coding) => coding.trim().toLowerCase())
    .filter((coding) => coding !== "" && coding !== "identity");
  if (codings.length === 0) return "sniff";
  if (codings.length > 1) return null;
  const [coding] = codings;
  if (coding === "gzip" || coding === "x-gzip") return "gzip";
  return coding === "deflate" || coding === "br" ? coding : null;
}

function mediaType(contentType: string): string {
  const end = contentType.indexOf(";");
  return (end === -1 ? contentType : contentType.slice(0, end)).trim().toLowerCase();
}

function urlOf(addr: Listener["addr"]): string {
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  return `http://${host}:${addr.port}`;
}

function isoOrNull(epochMs: number | null): string | null {
  return epochMs === null ? null : new Date(epochMs).toISOString();
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

if (import.meta.main) {
  // Flags, environment and config file are read exactly as `cotfit serve` reads them. No
  // top-level await here: main.ts imports this module back, which must be done evaluating.
  const args = Deno.args[0] === "serve" ? Deno.args : ["serve", ...Deno.args];
  import("./main.ts").then(({ main }) => main(args)).then((code) => Deno.exit(code));
}

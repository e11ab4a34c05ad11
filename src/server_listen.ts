/**
 * Serves a fetch handler (`app.fetch`) over HTTP/1.1 with `node:http`, with backpressure both
 * ways: the request body is read only as fast as the handler reads it, and the response is
 * written only as fast as the client takes it.
 *
 * Why not `Deno.serve`: from Deno 2.8.3 to at least 2.9.6 its HTTP/1.1 server, while a streamed
 * response is pending, reads everything the client sends into an unbounded buffer (it polls the
 * socket to notice a client that leaves; denoland/deno#36869 bounds that read-ahead). A client
 * uploading 1 GB faster than records are rephrased would then cost 1 GB of memory. Once that
 * fix ships, `Deno.serve(options, handler)` can replace {@linkcode listen}: the surface
 * (`addr`, `shutdown()`, `finished`) is the same.
 *
 * The price of backpressure, here as in that fix: while an upload is held back, a client that
 * disconnects is seen only at the next write of the response (TCP delivers its close behind
 * the unread upload), not at once.
 *
 * Requires `--allow-net` for the address it binds.
 *
 * @module
 */

import {
  createServer,
  type IncomingMessage,
  type OutgoingHttpHeader,
  type ServerResponse,
} from "node:http";
import type { AddressInfo, Socket } from "node:net";

/** A handler in the Fetch API's terms, such as a Hono app's `fetch`. */
export type FetchHandler = (request: Request) => Response | Promise<Response>;

/** Options of {@linkcode listen}. */
export interface ListenOptions {
  /** Interface to bind, e.g. `127.0.0.1`. */
  hostname: string;
  /** Port to bind; 0 picks a free one. */
  port: number;
}

/** A running server, shaped like `Deno.HttpServer`. */
export interface Listener extends AsyncDisposable {
  /** The bound address; `port` is the real one when 0 was asked for. */
  readonly addr: { readonly hostname: string; readonly port: number };
  /** Stops accepting connections and resolves once every response in flight is done. */
  shutdown(): Promise<void>;
  /**
   * Closes every connection now, responses in flight too: `shutdown` waits on a client that no
   * longer reads its response, this does not.
   */
  abort(): void;
  /** Resolves once the server has stopped. */
  readonly finished: Promise<void>;
}

/**
 * Starts serving `handler` on `hostname:port`. Each request becomes a `Request` whose body
 * streams the upload and whose `signal` aborts when the client disconnects; the `Response`
 * body is streamed back chunk by chunk, headers first, and cancelled when the client leaves.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { listen } from "./server_listen.ts";
 *
 * await using server = await listen(
 *   async (request) => new Response(`got ${(await request.text()).length} bytes`),
 *   { hostname: "127.0.0.1", port: 0 },
 * );
 * const response = await fetch(`http://127.0.0.1:${server.addr.port}/`, {
 *   method: "POST",
 *   body: "hello",
 * });
 * assert.equal(await response.text(), "got 5 bytes");
 * ```
 *
 * @param handler Answers each request.
 * @param options Where to listen.
 * @returns The running server, once it listens.
 * @throws {Error} When it cannot listen (address in use, no permission).
 */
export function listen(handler: FetchHandler, options: ListenOptions): Promise<Listener> {
  const finished = Promise.withResolvers<void>();
  let closing = false;
  // Keep-alive connections between requests; Deno's node:http neither times them out nor
  // closes them in closeIdleConnections(), so shutdown closes them itself.
  const idle = new Set<Socket>();
  const sockets = new Set<Socket>();
  // A 1 GB upload may take longer than Node's default 5 minutes for a whole request.
  const server = createServer({ requestTimeout: 0 }, (incoming, outgoing) => {
    const socket = incoming.socket;
    idle.delete(socket);
    outgoing.once("finish", () => {
      // An upload cut short (shutdown, fatal error) or a server going away: hang up rather
      // than wait for the client to finish an upload nobody reads.
      if (!incoming.complete || closing) hangUp(incoming);
      else if (!socket.destroyed) idle.add(socket);
    });
    respond(handler, incoming, outgoing, server.address() as AddressInfo).catch(() => {
      outgoing.destroy();
    });
  });
  server.on("connection", (socket: Socket) => {
    idle.add(socket);
    sockets.add(socket);
    socket.once("close", () => {
      idle.delete(socket);
      sockets.delete(socket);
    });
  });
  server.on("close", () => finished.resolve());

  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.hostname, () => {
      server.off("error", reject);
      const { address, port } = server.address() as AddressInfo;
      let shutdown: Promise<void> | null = null;
      const listener: Listener = {
        addr: { hostname: address, port },
        finished: finished.promise,
        shutdown() {
          shutdown ??= new Promise<void>((done) => {
            closing = true;
            server.close(() => done());
            for (const socket of idle) socket.destroy();
          });
          return shutdown;
        },
        abort() {
          listener.shutdown().catch(() => {});
          for (const socket of sockets) socket.destroy();
        },
        [Symbol.asyncDispose]() {
          return listener.shutdown();
        },
      };
      resolve(listener);
    });
  });
}

/** How long a client may go on uploading into a connection that is being closed. */
const HANG_UP_GRACE_MS = 1000;

/**
 * Ends the connection once the response is sent: a FIN after the last byte, the rest of the
 * upload read and dropped (closing with unread input would send a reset that can destroy the
 * response in the client's buffers), and a hard close if the client keeps sending.
 */
function hangUp(incoming: IncomingMessage): void {
  const socket = incoming.socket;
  incoming.removeAllListeners("data");
  incoming.resume();
  socket.end();
  const timer = setTimeout(() => socket.destroy(), HANG_UP_GRACE_MS);
  socket.once("close", () => clearTimeout(timer));
}

async function respond(
  handler: FetchHandler,
  incoming: IncomingMessage,
  outgoing: ServerResponse,
  local: AddressInfo,
): Promise<void> {
  const disconnected = new AbortController();
  outgoing.once("close", () => {
    if (!outgoing.writableFinished) disconnected.abort();
  });
  const request = toRequest(incoming, local, disconnected.signal);
  let response: Response;
  try {
    response = await handler(request);
  } catch {
    response = new Response("internal error", { status: 500 });
  }
  const headers: OutgoingHttpHeader[] = [];
  for (const [name, value] of response.headers) {
    if (name !== "set-cookie") headers.push(name, value);
  }
  for (const cookie of response.headers.getSetCookie()) headers.push("set-cookie", cookie);
  outgoing.writeHead(response.status, headers as unknown as string[]);
  const body = response.body;
  if (body === null || incoming.method === "HEAD") {
    await body?.cancel();
    outgoing.end();
    return;
  }
  // A streamed response's first line may be a while coming; the client gets the status now.
  outgoing.flushHeaders();
  const reader = body.getReader();
  disconnected.signal.addEventListener("abort", () => {
    reader.cancel(new DOMException("the client went away", "AbortError")).catch(() => {});
  }, { once: true });
  try {
    for (let next = await reader.read(); !next.done; next = await reader.read()) {
      if (!outgoing.write(next.value)) await drained(outgoing);
    }
  } catch (error) {
    outgoing.destroy(error instanceof Error ? error : undefined);
    return;
  }
  outgoing.end();
}

/** Resolves when `outgoing` can take more, or when its connection is gone. */
function drained(outgoing: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      outgoing.off("drain", done);
      outgoing.off("close", done);
      resolve();
    };
    outgoing.on("drain", done);
    outgoing.on("close", done);
  });
}

function toRequest(incoming: IncomingMessage, local: AddressInfo, signal: AbortSignal): Request {
  const headers = new Headers();
  const raw = incoming.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) headers.append(raw[i], raw[i + 1]);
  const method = incoming.method ?? "GET";
  const host = local.family === "IPv6" ? `[${local.address}]` : local.address;
  const url = new URL(incoming.url ?? "/", `http://${host}:${local.port}`);
  const hasBody = method !== "GET" && method !== "HEAD";
  return new Request(url, {
    method,
    headers,
    body: hasBody ? bodyStream(incoming) : null,
    signal,
    duplex: "half",
  } as RequestInit);
}

/** The upload as a stream that pauses the socket while its one-chunk queue is full. */
function bodyStream(incoming: IncomingMessage): ReadableStream<Uint8Array> {
  let open = true;
  return new ReadableStream<Uint8Array>({
    start(controller) {
      const fail = (error: Error) => {
        if (!open) return;
        open = false;
        controller.error(error);
      };
      incoming.on("data", (chunk: Uint8Array) => {
        if (!open) return;
        controller.enqueue(chunk);
        if ((controller.desiredSize ?? 0) <= 0) incoming.pause();
      });
      incoming.once("end", () => {
        if (!open) return;
        open = false;
        controller.close();
      });
      incoming.on("error", fail);
      incoming.once("aborted", () => fail(new Error("the upload was cut off")));
      incoming.pause();
    },
    pull() {
      incoming.resume();
    },
    cancel() {
      // Stop taking the upload: TCP flow control stalls the client until the response ends.
      open = false;
      incoming.pause();
    },
  });
}

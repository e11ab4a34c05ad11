/**
 * Bearer-token authentication for the server: hono's `bearerAuth` (which compares tokens in
 * constant time), answering every failure with a 401 JSON error.
 *
 * @module
 */

import type { MiddlewareHandler } from "hono";
import { bearerAuth } from "hono/bearer-auth";
import { isBearerToken } from "./server_access.ts";
import { jsonError } from "./server_errors.ts";

/**
 * Middleware that lets a request through only with `Authorization: Bearer <token>`. A missing,
 * malformed or wrong header gets 401 with a `WWW-Authenticate` challenge and a JSON error that
 * never echoes what was sent.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { Hono } from "hono";
 * import { requireBearerToken } from "./server_auth.ts";
 *
 * const app = new Hono().use(requireBearerToken("s3cret")).get("/", (c) => c.text("hi"));
 * assert.equal((await app.request("/")).status, 401);
 * assert.equal((await app.request("/", { headers: { authorization: "Bearer nope" } })).status, 401);
 * const ok = await app.request("/", { headers: { authorization: "Bearer s3cret" } });
 * assert.equal(await ok.text(), "hi");
 * ```
 *
 * @param token The token clients must send.
 * @returns The middleware.
 * @throws {TypeError} When `token` cannot be sent as a bearer token (the message never shows it).
 */
export function requireBearerToken(token: string): MiddlewareHandler {
  if (!isBearerToken(token)) {
    throw new TypeError(
      "Cannot use token: a bearer token is letters, digits and . _ ~ + / - (then = padding)",
    );
  }
  return bearerAuth({
    token,
    noAuthenticationHeader: {
      message: () => jsonError(401, "missing token: send Authorization: Bearer <token>"),
    },
    // RFC 6750 says 400 for a malformed header; a client without the token is unauthorized.
    invalidAuthenticationHeader: {
      message: () => jsonError(401, "malformed Authorization header: expected Bearer <token>"),
    },
    invalidToken: { message: () => jsonError(401, "wrong token") },
  });
}

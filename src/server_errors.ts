/**
 * The one shape of every error the server answers with: `{"error": {"message": "..."}}`, the
 * same object that error lines inside a streamed response carry.
 *
 * @module
 */

/**
 * A JSON error response.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { jsonError } from "./server_errors.ts";
 *
 * const response = jsonError(429, "server busy", { "retry-after": "1" });
 * assert.equal(response.status, 429);
 * assert.equal(response.headers.get("retry-after"), "1");
 * assert.deepEqual(await response.json(), { error: { message: "server busy" } });
 * ```
 *
 * @param status The HTTP status.
 * @param message One line for the client; never a secret.
 * @param headers Extra headers (`retry-after`, `allow`...).
 * @returns The response, `content-type: application/json`.
 */
export function jsonError(status: number, message: string, headers: HeadersInit = {}): Response {
  return Response.json({ error: { message } }, { status, headers });
}

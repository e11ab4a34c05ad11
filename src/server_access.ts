/**
 * Who may reach the server: without a token only this machine (a loopback host), and a token must
 * be sendable as a bearer token. Pure checks, without hono, so that checking the options can use them.
 *
 * @module
 */

const IPV4_LOOPBACK = /^127(?:\.(?:25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;
// Every group zero but a last 1, written with `::` or in all eight groups: ::1, 0:0:0:0:0:0:0:1.
const IPV6_LOOPBACK = /^(?:[0:]*::(?:0{1,4}:)*|(?:0{1,4}:){7})0{0,3}1$/;
const BEARER_TOKEN = /^[A-Za-z0-9._~+/-]+=*$/;

/**
 * Whether `serve` listening on `host` is reachable from this machine only: `localhost`,
 * 127.0.0.0/8 or `::1` (brackets allowed). Such a server may run without a token.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { isLoopbackHost } from "./server_access.ts";
 *
 * assert.ok(isLoopbackHost("127.0.0.1") && isLoopbackHost("localhost") && isLoopbackHost("[::1]"));
 * assert.ok(!isLoopbackHost("0.0.0.0") && !isLoopbackHost("::") && !isLoopbackHost("10.0.0.7"));
 * ```
 *
 * @param host A hostname or IP address, as given to `--host`.
 * @returns `true` for a loopback name or address.
 */
export function isLoopbackHost(host: string): boolean {
  const name = host.toLowerCase().replace(/^\[(.*)\]$/, "$1");
  return name === "localhost" || IPV4_LOOPBACK.test(name) || IPV6_LOOPBACK.test(name);
}

/**
 * Whether `text` can be sent as `Authorization: Bearer <text>` (RFC 6750's b64token syntax).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { isBearerToken } from "./server_access.ts";
 *
 * assert.ok(isBearerToken("3f9a0c-Zz_~+/=="));
 * assert.ok(!isBearerToken("two words") && !isBearerToken(""));
 * ```
 *
 * @param text A candidate token.
 * @returns `true` when every character is allowed.
 */
export function isBearerToken(text: string): boolean {
  return BEARER_TOKEN.test(text);
}

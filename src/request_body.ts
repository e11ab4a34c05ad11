/**
 * The bytes of a chat-completion request: its fields and messages as JSON, written straight to
 * UTF-8, on the hot path of every call.
 *
 * @module
 */

import type { ChatMessage } from "./types.ts";

/** The request's fields besides `messages`; `undefined` ones are not sent. */
export interface RequestFields {
  model: string;
  temperature?: number;
  max_tokens?: number;
  max_completion_tokens?: number;
  top_p?: number;
  /** `extraBody`'s. */
  [field: string]: unknown;
}

const COMMA = 0x2c;
const CLOSE_BRACKET = 0x5d;
const CLOSE_BRACE = 0x7d;
/** Request bodies up to this size are encoded in a reused buffer. */
const SCRATCH_BYTES = 256 * 1024;
const encoder = new TextEncoder();

/**
 * Serialises `{ ...fields, messages }` as `JSON.stringify` would, straight to UTF-8, reusing the
 * bytes of frozen messages: a prompt's system message and few-shot examples are the same frozen
 * objects in every request, and stringifying and encoding those ~6 KB again cost ~100 µs per
 * call.
 *
 * @param fields Every field but `messages`; `undefined` ones are left out, as JSON does.
 * @returns A writer of one request's bytes: a view valid until its next call.
 *
 * @example The same bytes as JSON.stringify
 * ```ts
 * import assert from "node:assert/strict";
 * import { bodyWriter } from "./request_body.ts";
 *
 * const fields = { model: "m", temperature: 0.7, max_tokens: 512, top_p: undefined };
 * const system = Object.freeze({ role: "system" as const, content: "Write a thought." });
 * const write = bodyWriter(fields);
 * for (const content of ["Hi", "Ünïcödé ✓"]) {
 *   const messages = [system, { role: "user" as const, content }];
 *   const text = new TextDecoder().decode(write(messages));
 *   assert.equal(text, JSON.stringify({ ...fields, messages }));
 * }
 * ```
 */
export function bodyWriter(
  fields: Readonly<RequestFields>,
): (messages: readonly ChatMessage[]) => Uint8Array<ArrayBuffer> {
  const head = encoder.encode(`${JSON.stringify(fields).slice(0, -1)},"messages":[`);
  const frozenBytes = new WeakMap<ChatMessage, Uint8Array>();
  // Encoded into one reused buffer sized for the worst case (3 bytes a UTF-16 unit): a fresh
  // worst-case buffer per call tripled what each call allocated. The result is a view of it,
  // valid until the next call; both transports copy it before their first await (`fetch` by
  // the Fetch spec, the pool into its request bytes).
  const scratch = new Uint8Array(SCRATCH_BYTES);
  return (messages) => {
    const parts: (Uint8Array | string)[] = [];
    let bound = head.length + messages.length + 1;
    for (const message of messages) {
      let part: Uint8Array | string | undefined = frozenBytes.get(message);
      if (part === undefined) {
        part = JSON.stringify(message);
        if (Object.isFrozen(message)) frozenBytes.set(message, part = encoder.encode(part));
      }
      bound += typeof part === "string" ? part.length * 3 : part.length;
      parts.push(part);
    }
    // A huge record gets a buffer of its own rather than a scratch that stays huge.
    const out = bound <= scratch.length ? scratch : new Uint8Array(bound);
    out.set(head);
    let at = head.length;
    for (let i = 0; i < parts.length; i++) {
      if (i > 0) out[at++] = COMMA;
      const part = parts[i];
      if (typeof part === "string") at += encoder.encodeInto(part, out.subarray(at)).written;
      else {
        out.set(part, at);
        at += part.length;
      }
    }
    out[at++] = CLOSE_BRACKET;
    out[at++] = CLOSE_BRACE;
    return out.subarray(0, at);
  };
}

/**
 * Adapting a request to an endpoint that refuses one of its fields (OpenAI's reasoning models
 * refuse `max_tokens` and any but the default `temperature`), so such a model still works.
 *
 * @module
 */

import { APIError } from "openai/error";
import type { RequestFields } from "./request_body.ts";

/** How many fields {@linkcode requestFix} may change: a bound on a call's resends. */
export const MAX_FIELDS = 3;

/** A change to the request that answers a refusal; `notice` is `null` when already made. */
export interface RequestFix {
  readonly notice: string | null;
  apply(fields: RequestFields): void;
}

/**
 * What to change when the endpoint refused a request because of one of its fields, as OpenAI's
 * reasoning models (o-series, GPT-5) do: a 400 whose `param` (or message) names `max_tokens`
 * ("use `max_completion_tokens` instead"), or `temperature` or `top_p` ("only the default value
 * is supported"). `null` for any other error.
 *
 * @param error What the call threw.
 * @param fields The request's fields as now sent.
 * @param model The model, for the notice.
 * @returns The change, or `null`.
 *
 * @example A reasoning model refuses max_tokens
 * ```ts
 * import assert from "node:assert/strict";
 * import { APIError } from "openai/error";
 * import { requestFix } from "./request_fix.ts";
 *
 * const refusal = APIError.generate(400, {
 *   error: {
 *     message: "Unsupported parameter: 'max_tokens' is not supported with this model. " +
 *       "Use 'max_completion_tokens' instead.",
 *     param: "max_tokens",
 *   },
 * }, undefined, new Headers());
 * const fields = { model: "o4-mini", max_tokens: 1024 };
 * const fix = requestFix(refusal, fields, "o4-mini");
 * assert.match(fix?.notice ?? "", /max_completion_tokens/);
 * fix?.apply(fields);
 * assert.deepEqual(fields, { model: "o4-mini", max_completion_tokens: 1024 });
 * assert.equal(requestFix(refusal, fields, "o4-mini")?.notice, null); // already made
 * assert.equal(requestFix(new Error("reset"), fields, "o4-mini"), null);
 * ```
 */
export function requestFix(
  error: unknown,
  fields: RequestFields,
  model: string,
): RequestFix | null {
  if (!(error instanceof APIError) || error.status !== 400) return null;
  const param = typeof error.param === "string" ? error.param : "";
  const message = error.message;
  const names = (field: string) =>
    param === field || new RegExp(`['"\`]${field}['"\`]`).test(message);
  if (names("max_tokens") && /max_completion_tokens/.test(message)) {
    if (fields.max_tokens === undefined) return { notice: null, apply() {} };
    return {
      notice: `the endpoint takes "max_completion_tokens" instead of "max_tokens" for model ` +
        `${model}: sending that`,
      apply(fields) {
        fields.max_completion_tokens = fields.max_tokens;
        delete fields.max_tokens;
      },
    };
  }
  for (const [field, flag] of [["temperature", "--temperature"], ["top_p", "--top-p"]] as const) {
    if (!names(field) || !/unsupported|not support|only the default/i.test(message)) continue;
    if (fields[field] === undefined) return { notice: null, apply() {} };
    return {
      notice: `model ${model} takes only its default ${field}: sending none (${flag} ` +
        `${fields[field]} is not used)`,
      apply(fields) {
        delete fields[field];
      },
    };
  }
  return null;
}

/**
 * The text of `cotfit --help`.
 *
 * @module
 */

/**
 * Help for `cotfit --help`: examples first, then every option with its default.
 */
export const HELP_TEXT =
  `cotfit: add a synthetic "thought process" before every assistant answer of a
ShareGPT, OpenAI, Alpaca, Dolly or OpenOrca JSONL dataset, written by any
OpenAI-compatible LLM.
Each answer becomes PREFACE\\nTHOUGHT\\nSUFFIX\\nANSWER; the answer itself is never changed.

"cotfit" below stands for "deno task start", or in full:
  deno run --allow-read --allow-write --allow-net --allow-env main.ts

To add thoughts to a file, or to every .jsonl, .ndjson or .json file (or .gz of one) under a
folder, writing out/NAME.jsonl:
  export OPENAI_API_KEY=sk-...
  cotfit data/ -o out/ --model gpt-4o-mini

To filter a stream, with rejected records going to a file:
  cotfit - --model gpt-4o-mini --rejects rejects.jsonl < in.jsonl > out.jsonl

To try the first 20 records, and to estimate a whole run's cost without calling the LLM:
  cotfit data.jsonl -o out/ --model gpt-4o-mini --limit 20
  cotfit data.jsonl -o out/ --model gpt-4o-mini --dry-run --price-input 0.15 --price-output 0.6

To use a local server (Ollama, vLLM, llama.cpp...), or an Augmentoolkit config as is:
  cotfit data/ -o out/ --base-url http://127.0.0.1:11434/v1 --model llama3.1
  cotfit -c generic_data_rephrase/config.yaml

To serve it over HTTP to clients sending "Authorization: Bearer $COTFIT_TOKEN":
  COTFIT_TOKEN=$(openssl rand -hex 24) cotfit serve --model gpt-4o-mini

To see it work offline, against a built-in stand-in for the LLM (no key, no network):
  cotfit demo

USAGE:
  cotfit [OPTIONS] INPUT... -o OUT_DIR     files or folders; each output keeps its input's name
  cotfit [OPTIONS] - < in.jsonl > out.jsonl
  cotfit serve [OPTIONS]
  cotfit demo [OPTIONS]
  (An input file named "serve" or "demo" is written ./serve.)

INPUT AND OUTPUT:
  -o, --output=DIR            Write each input NAME to DIR/NAME, and its rejected records to
                              DIR/NAME.rejects.jsonl
      --rejects=FILE          Where rejected records go when reading - (default: stderr)
      --max-line-bytes=N      Longer input lines are rejected (default 16777216, 16 MiB)

LLM:
      --model=NAME            Model to ask; required (env COTFIT_MODEL)
      --base-url=URL          OpenAI-compatible endpoint (default https://api.openai.com/v1;
                              env OPENAI_BASE_URL)
      --api-key-env=NAME      Environment variable holding the API key (default OPENAI_API_KEY);
                              the key is never taken from a flag
      --concurrency=N         LLM calls in flight, 1 to 4096 (default 32)
      --timeout=SECONDS       Per-call timeout (default 120)
      --retries=N             Further attempts after a failed call or a bad thought (default 7)
      --temperature=T         Sampling temperature, 0 to 2 (default 0.7)
      --top-p=P               Nucleus sampling, 0 to 1 (default: the server's)
      --max-tokens=N          Completion token cap per call (default 1024)
      --extra-body=JSON       More request fields, e.g. '{"reasoning_effort": "low"}' or
                              '{"chat_template_kwargs": {"enable_thinking": false}}'
      --max-thought-tokens=N  Longer thoughts are rejected and retried (default 1024)
      --history-tokens=N      Tokens of earlier turns shown; the oldest go first (default 3000)

OUTPUT FORMAT:
      --cot-preface=TEXT      Written before the thought (default "Thought Process:")
      --cot-suffix=TEXT       Written after it, before the answer (default "\\nAnswer:");
                              in both, \\n is a newline and \\t a tab
      --prompt=FILE           Prompt YAML to use instead of prompts/thought_process.yaml

LONG RUNS:
      --cache=PATH            Generation cache: a rerun resumes and re-pays nothing
                              (default: OUT_DIR/.cotfit-cache.sqlite)
      --no-cache              Neither read nor write a cache
      --dry-run               Read and count everything, call no LLM
      --limit=N               Only the first N records
      --sample=N              A random N records, the same for the same --seed
      --seed=S                Seed of --sample (default 0)
      --price-input=USD       USD per million input tokens, for the cost report
      --price-output=USD      USD per million output tokens (give both prices or neither)
      --debug-log=FILE        Log every raw generation to FILE as JSONL
  -q, --quiet                 No progress display

SERVER (cotfit serve):
      --host=HOST             Interface to listen on (default 127.0.0.1)
      --port=PORT             Port to listen on; 0 picks a free one (default 8787)
      --token=TOKEN           Bearer token clients must send; required on a non-loopback --host
                              unless --insecure-no-auth (env COTFIT_TOKEN, better: flags show in
                              the process list)
      --insecure-no-auth      Accept requests without a token
      --max-requests=N        Requests handled at once (default 64)
      --request-concurrency=N LLM calls in flight per request (default 16)

GENERAL:
  -c, --config=FILE           YAML config: cotfit's own (see config.example.yaml) or an
                              Augmentoolkit generic_data_rephrase config.yaml as is. Paths in it
                              are relative to its folder. Flags > env > config > defaults.
  -h, --help                  Show this help
      --version               Show the version

ENVIRONMENT:
  OPENAI_API_KEY   API key (or the variable named by --api-key-env)
  OPENAI_BASE_URL  Default of --base-url
  COTFIT_MODEL     Default of --model
  COTFIT_RETRY_BASE_MS  First backoff after a transient error, doubling up to 30 s (default 1000)
  COTFIT_TRANSPORT auto (default), pooled or fetch: auto sends http:// endpoints on an IP address
                   or localhost through cotfit's keep-alive HTTP/1.1 pool unless HTTP_PROXY or
                   ALL_PROXY is set, the rest through fetch
  COTFIT_TOKEN     Default of --token

EXIT CODES:
  0    every record was written
  1    some records were rejected (see the rejects files)
  2    bad usage, flag or config, an input or prompt file that cannot be read, an output or
       cache that cannot be created, a file to be written that would overwrite an input or
       another file of the run, or the LLM endpoint refused the run (bad key or model)
  130  interrupted; run the same command again to resume from the cache

PERMISSIONS:
  --allow-read   inputs, config, prompt, cache
  --allow-write  outputs, rejects, cache, debug log
  --allow-net    the LLM endpoint (narrow it: --allow-net=api.openai.com); serve: its port
  --allow-env    the API key, OPENAI_BASE_URL, COTFIT_*, HTTP_PROXY, ALL_PROXY`;

// The on-chain mode's client: the walsh canister's `generate_with` and `model_info` queries, and
// what the page says about each of their answers. The transport is a function given to
// `ChainClient` (`call(method, arg)` → the decoded Candid result), so that the same code runs
// against the canister through DFINITY's agent (agent.js) and against the tests' stand-in.

// Tokens a continuation query asks for at most when a query stopped at its instruction budget.
export const MAX_CONTINUATIONS = 8;

const opt = (v) => (v === undefined || v === null ? [] : [v]);

// The Candid GenerateRequest for the page's settings (what `packer run` takes).
export function generateRequest({ prompt, maxTokens, temperature, topK, topP, seed }) {
  return {
    prompt,
    max_tokens: maxTokens,
    temperature: opt(temperature),
    top_k: opt(topK),
    top_p: opt(topP),
    seed: opt(BigInt(seed)),
    stop: [],
  };
}

const variantName = (v) => Object.keys(v)[0];
const n = (x) => Number(x).toLocaleString('en-US');

// One sentence for a visitor for every GenerateError of candid/walsh.did.
export function describeGenerateError(err) {
  const kind = variantName(err);
  const e = err[kind];
  switch (kind) {
    case 'NoModel': return 'The canister has no model loaded yet: its operator must upload one.';
    case 'PromptTooManyBytes': return `The prompt is too long: ${n(e.bytes)} bytes, at most ${n(e.max)} (the model's context is ${n(e.context)} tokens).`;
    case 'PromptTooLong':
      return Number(e.max_query) < Number(e.max_context)
        ? `The prompt is too long: ${n(e.tokens)} tokens; one query can read at most ${n(e.max_query)} before its instruction limit (the context holds ${n(e.max_context)}).`
        : `The prompt is too long: ${n(e.tokens)} tokens, the model's context holds ${n(e.max_context)}.`;
    case 'TooManyStops': return `Too many stop strings: ${n(e.count)}, at most ${n(e.max)}.`;
    case 'StopTooLong': return `Stop string ${e.index + 1} is too long: ${n(e.bytes)} bytes, at most ${n(e.max)}.`;
    case 'InvalidSampling': return `Invalid settings: ${e}.`;
    case 'Engine': return `The model failed: ${e}.`;
    default: return `The canister refused: ${JSON.stringify(err, (_, v) => (typeof v === 'bigint' ? v.toString() : v))}`;
  }
}

export class GenerateRefused extends Error {
  constructor(err) {
    super(describeGenerateError(err));
    this.name = 'GenerateRefused';
    this.candid = err;
  }
}

export class ChainClient {
  // call(method, arg) resolves to the method's decoded result (a Candid variant object).
  constructor(call) {
    this.call = call;
  }

  // model_info, as the canister reports it.
  async modelInfo() {
    const r = await this.call('model_info', null);
    if ('Err' in r) throw new Error('The canister has no model loaded yet: its operator must upload one.');
    return r.Ok;
  }

  // Writes a story with one generate_with query: that gives exactly `packer run`'s text for the
  // same settings and seed (several shorter queries would re-read the prompt each time and,
  // with sampling, restart the sampler). Only when a query ends at its instruction budget does
  // another query continue the text (the prompt is then the text so far; greedy text stays the
  // same where the tokenizer splits the text as it was generated). onProgress(text, generation)
  // sees the text after each query.
  async write(settings, onProgress = () => {}) {
    let text = '';
    let generated = 0;
    let instructions = 0n;
    let queries = 0;
    let last = null;
    // Each query's own text: the first is exactly packer run's beginning.
    const pieces = [];
    while (generated < settings.maxTokens && queries <= MAX_CONTINUATIONS) {
      const req = generateRequest({ ...settings, prompt: settings.prompt + text, maxTokens: settings.maxTokens - generated });
      const r = await this.call('generate_with', req);
      queries += 1;
      if ('Err' in r) {
        // A refused continuation keeps what the earlier queries wrote.
        if (queries > 1) break;
        throw new GenerateRefused(r.Err);
      }
      last = r.Ok;
      pieces.push(last.text);
      text += last.text;
      generated += last.generated_tokens;
      instructions += BigInt(last.instructions);
      onProgress(text, last);
      const finish = variantName(last.finish_reason);
      if (finish !== 'budget' || last.generated_tokens === 0) break;
    }
    return {
      text,
      generatedTokens: generated,
      finish: last ? variantName(last.finish_reason) : 'budget',
      queries,
      instructions,
      pieces,
    };
  }
}

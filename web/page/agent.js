// The canister behind the page, through DFINITY's agent (vendor/icp-sdk-core.js, built by
// web/vendor/bundle.sh): where it is, and the Candid of the two queries the page calls.
import { HttpAgent, Actor, IDL } from './vendor/icp-sdk-core.js';

// The canister id and the API's host for the page's own address: <id>.icp0.io (mainnet),
// <id>.localhost:4943 (dfx and icp-cli's local network), or any host with ?canisterId=<id>.
export function locateCanister(location) {
  const params = new URLSearchParams(location.search);
  const host = location.hostname;
  const local = host === 'localhost' || host === '127.0.0.1' || host.endsWith('.localhost');
  let id = params.get('canisterId');
  if (!id) {
    const m = host.match(/^([a-z0-9]{5}(?:-[a-z0-9]{5}){3}-[a-z0-9]{3})\.(?:raw\.)?(?:icp0\.io|ic0\.app|localhost)$/);
    if (m) id = m[1];
  }
  if (!id) return null;
  const apiHost = local ? location.origin : 'https://icp-api.io';
  return { canisterId: id, host: apiHost, local };
}

export const idlFactory = ({ IDL }) => {
  const GenerateRequest = IDL.Record({
    prompt: IDL.Text,
    max_tokens: IDL.Nat32,
    temperature: IDL.Opt(IDL.Float32),
    top_k: IDL.Opt(IDL.Nat32),
    top_p: IDL.Opt(IDL.Float32),
    seed: IDL.Opt(IDL.Nat64),
    stop: IDL.Opt(IDL.Vec(IDL.Text)),
  });
  const FinishReason = IDL.Variant({ eos: IDL.Null, context: IDL.Null, stop: IDL.Null, length: IDL.Null, budget: IDL.Null });
  const Generation = IDL.Record({
    text: IDL.Text,
    finish_reason: FinishReason,
    instructions: IDL.Nat64,
    tokens: IDL.Vec(IDL.Nat32),
    prompt_tokens: IDL.Nat32,
    generated_tokens: IDL.Nat32,
  });
  const GenerateError = IDL.Variant({
    NoModel: IDL.Null,
    PromptTooManyBytes: IDL.Record({ bytes: IDL.Nat64, max: IDL.Nat64, context: IDL.Nat32 }),
    PromptTooLong: IDL.Record({ tokens: IDL.Nat32, max: IDL.Nat32, max_context: IDL.Nat32, max_query: IDL.Nat32, limit: IDL.Nat64 }),
    TooManyStops: IDL.Record({ count: IDL.Nat64, max: IDL.Nat32 }),
    StopTooLong: IDL.Record({ index: IDL.Nat32, bytes: IDL.Nat64, max: IDL.Nat32 }),
    InvalidSampling: IDL.Text,
    Engine: IDL.Text,
  });
  const ModelConfigView = IDL.Record({
    vocab_size: IDL.Nat32, block_size: IDL.Nat32, head_mixing: IDL.Bool, name: IDL.Text, n_layer: IDL.Nat32,
    algebra: IDL.Text, embedding: IDL.Text, hash_buckets: IDL.Nat32, n_embd: IDL.Nat32, n_head: IDL.Nat32,
  });
  const ModelSource = IDL.Variant({ uploaded: IDL.Record({ by: IDL.Principal, at_ns: IDL.Nat64 }), embedded: IDL.Null });
  const ModelInfo = IDL.Record({
    blob_size: IDL.Nat64, sha256: IDL.Text, source: ModelSource, total_params: IDL.Nat64, packing: IDL.Text,
    config: ModelConfigView, brain_params: IDL.Nat64, heap_bytes: IDL.Nat64, embedding_params: IDL.Nat64,
  });
  return IDL.Service({
    generate_with: IDL.Func([GenerateRequest], [IDL.Variant({ Ok: Generation, Err: GenerateError })], ['query']),
    model_info: IDL.Func([], [IDL.Variant({ Ok: ModelInfo, Err: IDL.Variant({ NoModel: IDL.Null }) })], ['query']),
  });
};

// call(method, arg) over the agent, for ChainClient.
export async function agentCall(where) {
  const agent = await HttpAgent.create({ host: where.host, shouldFetchRootKey: where.local });
  const actor = Actor.createActor(idlFactory, { agent, canisterId: where.canisterId });
  return (method, arg) => (arg === null ? actor[method]() : actor[method](arg));
}

// The in-browser engine's Web Worker: loads a .walsh blob into walsh-web (wasm-bindgen) and
// writes stories a few tokens at a time, so that the page stays responsive and a Stop is heard
// between steps. Messages in: {type: 'load', url} | {type: 'loadBytes', bytes, name} |
// {type: 'generate', id, prompt, maxTokens, temperature, topK, topP, seed} | {type: 'stop'}.
// Messages out: 'loading', 'loaded', 'progress', 'done', 'error' (see app.js).

const CACHE = 'walsh-models-v1';
// A step batch runs for about this long before the worker posts progress and reads its messages.
const SLICE_MS = 30;

let ready = null;
let WebEngine = null;
let engine = null;
let stopRequested = false;

function post(msg) { self.postMessage(msg); }

// Yields to the event loop without setTimeout's clamping (a message to ourselves).
function yieldToMessages() {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => resolve();
    channel.port2.postMessage(null);
  });
}

// The blob at `url`, from Cache Storage when it was downloaded before.
async function fetchBlob(url) {
  const cache = ('caches' in self) ? await caches.open(CACHE).catch(() => null) : null;
  let response = cache ? await cache.match(url) : undefined;
  let cached = Boolean(response);
  if (!response) {
    response = await fetch(url);
    if (!response.ok) {
      throw new Error(`downloading the model from ${url} failed: HTTP ${response.status}`);
    }
    if (cache) {
      await cache.put(url, response.clone()).catch(() => { cached = false; });
    }
  }
  const bytes = new Uint8Array(await response.arrayBuffer());
  return { bytes, cached };
}

function load(bytes, source) {
  engine?.free();
  engine = null;
  const t0 = performance.now();
  engine = new WebEngine(bytes);
  post({ type: 'loaded', info: JSON.parse(engine.infoJson()), source, loadMs: performance.now() - t0 });
}

async function generate(msg) {
  if (!engine) throw new Error('no model loaded');
  stopRequested = false;
  const t0 = performance.now();
  const story = engine.start(msg.prompt, msg.maxTokens, msg.temperature, msg.topK, msg.topP, BigInt(msg.seed));
  try {
    const prefillMs = performance.now() - t0;
    const decodeStart = performance.now();
    let finish = story.finishReason();
    while (finish === undefined && !stopRequested) {
      const sliceEnd = performance.now() + SLICE_MS;
      while (performance.now() < sliceEnd && story.step(1) === 1) { /* step */ }
      finish = story.finishReason();
      const decodeMs = performance.now() - decodeStart;
      const tokens = story.generatedTokens();
      post({ type: 'progress', id: msg.id, text: story.text(), tokens, tokensPerSecond: tokens / (decodeMs / 1000) });
      await yieldToMessages();
    }
    const decodeMs = performance.now() - decodeStart;
    const tokens = story.generatedTokens();
    post({
      type: 'done', id: msg.id, text: story.text(), tokens, promptTokens: story.promptTokens(),
      finish: finish ?? 'stopped', prefillMs, decodeMs, tokensPerSecond: tokens / (decodeMs / 1000),
    });
  } finally {
    story.free();
  }
}

self.onmessage = async (event) => {
  const msg = event.data;
  if (msg.type === 'stop') { stopRequested = true; return; }
  try {
    ready ??= import('./pkg/walsh_web.js').then(
      async (mod) => { await mod.default(); WebEngine = mod.WebEngine; },
      (e) => { throw new Error(`the in-browser engine (pkg/walsh_web.js) is not available here (${e?.message ?? e}): a canister built without web/build.sh's output serves the page without it`); },
    );
    await ready;
    if (msg.type === 'load') {
      post({ type: 'loading', source: msg.url });
      const { bytes, cached } = await fetchBlob(msg.url);
      load(bytes, { url: msg.url, cached });
    } else if (msg.type === 'loadBytes') {
      load(new Uint8Array(msg.bytes), { file: msg.name });
    } else if (msg.type === 'generate') {
      await generate(msg);
    }
  } catch (e) {
    post({ type: 'error', id: msg.id, during: msg.type, message: String(e?.message ?? e) });
  }
};

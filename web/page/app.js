// The story page: settings in, a story out, from the canister (chain.js over agent.js) or from
// the engine in a Web Worker (worker.js). document.body.dataset.state tells where it stands
// (loading, ready, running, done, error), and window.walshLast holds the last story's numbers.
import { ChainClient } from './chain.js';
import { agentCall, locateCanister } from './agent.js';

const $ = (id) => document.getElementById(id);
const DEFAULT_MODEL_URL = new URL('models/walsh-default.walsh', document.baseURI).href;

const ui = {
  modeChain: $('mode-chain'), modeBrowser: $('mode-browser'), browserModel: $('browser-model'),
  browserModelStatus: $('browser-model-status'), modelFile: $('model-file'), prompt: $('prompt'),
  maxTokens: $('max-tokens'), temperature: $('temperature'), topK: $('top-k'), topP: $('top-p'),
  seed: $('seed'), generate: $('generate'), stop: $('stop'), status: $('status'),
  storyPrompt: $('story-prompt'), storyText: $('story-text'), stats: $('stats'), info: $('model-info'),
};

const where = locateCanister(window.location);
let chain = null;
let worker = null;
let browserInfo = null;
let running = false;
let nextId = 1;

function setState(state) { document.body.dataset.state = state; }

function say(text, isError = false) {
  ui.status.textContent = text;
  ui.status.classList.toggle('error', isError);
}

const fmt = (x) => Number(x).toLocaleString('en-US');
const mib = (bytes) => `${(Number(bytes) / (1 << 20)).toFixed(2)} MiB (${fmt(bytes)} bytes)`;

function showInfo(rows) {
  ui.info.replaceChildren();
  for (const [k, v] of rows) {
    const dt = document.createElement('dt');
    dt.textContent = k;
    const dd = document.createElement('dd');
    dd.textContent = v;
    ui.info.append(dt, dd);
  }
}

function describeConfig(c) {
  return `${c.name}: ${c.algebra} algebra, ${c.embedding} embedding, ${c.n_layer} layers, ${c.n_head} heads, width ${c.n_embd}, context ${c.block_size}, vocabulary ${fmt(c.vocab_size)}`;
}

function showChainInfo(m) {
  const source = 'embedded' in m.source
    ? 'the default model compiled into the canister'
    : `uploaded by ${m.source.uploaded.by.toText()} at ${new Date(Number(m.source.uploaded.at_ns / 1000000n)).toISOString()}`;
  showInfo([
    ['Runs on', `canister ${where.canisterId}`],
    ['Model', describeConfig(m.config)],
    ['Parameters', `${fmt(m.total_params)} (${fmt(m.brain_params)} ternary, ${fmt(m.embedding_params)} embedding)`],
    ['Blob', `${mib(m.blob_size)}, ${m.packing} packing`],
    ['SHA-256', m.sha256],
    ['From', source],
  ]);
}

function showBrowserInfo(i, source) {
  showInfo([
    ['Runs on', 'this browser (WebAssembly in a Web Worker)'],
    ['Model', describeConfig(i)],
    ['Parameters', `${fmt(i.total_params)} (${fmt(i.brain_params)} ternary, ${fmt(i.embedding_params)} embedding)`],
    ['Blob', `${mib(i.blob_size)}, ${i.packing} packing`],
    ['SHA-256', i.sha256],
    ['From', source.file ? `local file ${source.file}` : `${source.url}${source.cached ? ' (from this browser\'s cache)' : ''}`],
  ]);
}

function settings() {
  const num = (el, name, { min = -Infinity, max = Infinity, int = false } = {}) => {
    const v = Number(el.value);
    if (el.value.trim() === '' || !Number.isFinite(v) || v < min || v > max || (int && !Number.isInteger(v))) {
      throw new Error(`${name} must be ${int ? 'a whole number' : 'a number'}${min > -Infinity ? ` from ${min}` : ''}${max < Infinity ? ` to ${max}` : ''}.`);
    }
    return v;
  };
  return {
    prompt: ui.prompt.value,
    maxTokens: num(ui.maxTokens, 'Max tokens', { min: 1, max: 100000, int: true }),
    temperature: num(ui.temperature, 'Temperature', { min: 0 }),
    topK: num(ui.topK, 'Top-k', { min: 0, max: 4294967295, int: true }),
    topP: num(ui.topP, 'Top-p', { min: Number.MIN_VALUE, max: 1 }),
    seed: num(ui.seed, 'Seed', { min: 0, max: Number.MAX_SAFE_INTEGER, int: true }),
  };
}

function mode() { return ui.modeBrowser.checked ? 'browser' : 'chain'; }

function setRunning(on) {
  running = on;
  ui.generate.disabled = on;
  ui.stop.disabled = !on || mode() === 'chain';
  if (on) setState('running');
}

function finishStory(result) {
  window.walshLast = result;
  setRunning(false);
  setState('done');
}

function fail(message) {
  say(message, true);
  setRunning(false);
  setState('error');
}

// --- In-browser mode -----------------------------------------------------------------------

function ensureWorker() {
  if (worker) return worker;
  worker = new Worker(new URL('worker.js', import.meta.url), { type: 'module' });
  worker.onmessage = ({ data: m }) => {
    if (m.type === 'loading') {
      ui.browserModelStatus.textContent = 'Model: downloading…';
      say('Downloading the model (once: the browser keeps it)…');
    } else if (m.type === 'loaded') {
      browserInfo = m.info;
      ui.browserModelStatus.textContent = `Model: ${m.info.name}, ${mib(m.info.blob_size)}${m.source.cached ? ', from cache' : ''}`;
      showBrowserInfo(m.info, m.source);
      say(`Model loaded in ${Math.round(m.loadMs)} ms. Ready.`);
      setState('ready');
    } else if (m.type === 'progress') {
      ui.storyText.textContent = m.text;
      ui.stats.textContent = `${m.tokens} tokens · ${m.tokensPerSecond.toFixed(0)} tokens/s`;
    } else if (m.type === 'done') {
      ui.storyText.textContent = m.text;
      ui.stats.textContent = `${m.tokens} tokens in ${(m.decodeMs / 1000).toFixed(2)} s · ${m.tokensPerSecond.toFixed(0)} tokens/s (prefill of ${m.promptTokens + 1} positions ${m.prefillMs.toFixed(0)} ms) · ended: ${m.finish}`;
      say('Done, in this browser.');
      finishStory({ mode: 'browser', text: m.text, tokens: m.tokens, finish: m.finish, tokensPerSecond: m.tokensPerSecond, prefillMs: m.prefillMs, decodeMs: m.decodeMs });
    } else if (m.type === 'error') {
      if (m.during === 'load' || m.during === 'loadBytes') {
        browserInfo = null;
        ui.browserModelStatus.textContent = 'Model: not loaded';
        fail(`${m.message}. You can choose a local .walsh file instead.`);
      } else {
        fail(m.message);
      }
    }
  };
  worker.onerror = (e) => fail(`The in-browser engine failed to start: ${e.message ?? 'see the console'}`);
  return worker;
}

function loadBrowserModel() {
  setState('loading');
  ensureWorker().postMessage({ type: 'load', url: DEFAULT_MODEL_URL });
}

async function writeInBrowser(s) {
  if (!browserInfo) throw new Error('No model is loaded in this browser yet.');
  ensureWorker().postMessage({ type: 'generate', id: nextId++, ...s });
}

// --- On-chain mode ---------------------------------------------------------------------------

async function connectChain() {
  if (!where) return;
  try {
    chain = new ChainClient(await agentCall(where));
    showChainInfo(await chain.modelInfo());
    if (mode() === 'chain') setState('ready');
  } catch (e) {
    if (mode() === 'chain') fail(`Cannot reach the canister: ${e.message ?? e}`);
  }
}

async function writeOnChain(s) {
  if (!chain) throw new Error('Not connected to the canister.');
  say('Writing on-chain…');
  const t0 = performance.now();
  const r = await chain.write(s, (text) => { ui.storyText.textContent = text; });
  const seconds = (performance.now() - t0) / 1000;
  ui.storyText.textContent = r.text;
  ui.stats.textContent = `${r.generatedTokens} tokens in ${seconds.toFixed(2)} s · ${r.queries} ${r.queries === 1 ? 'query' : 'queries'}, ${fmt(r.instructions)} instructions · ended: ${r.finish}`;
  say('Done, on-chain.');
  finishStory({ mode: 'chain', text: r.text, tokens: r.generatedTokens, finish: r.finish, queries: r.queries });
}

// --- Wiring ----------------------------------------------------------------------------------

function onModeChange() {
  const browser = mode() === 'browser';
  ui.browserModel.hidden = !browser;
  ui.stop.disabled = true;
  if (browser && !browserInfo) loadBrowserModel();
  else if (browser) { showBrowserInfo(browserInfo, { url: DEFAULT_MODEL_URL }); setState('ready'); }
  else if (chain) { chain.modelInfo().then(showChainInfo).catch(() => {}); setState('ready'); }
}

ui.generate.addEventListener('click', async () => {
  if (running) return;
  let s;
  try { s = settings(); } catch (e) { fail(e.message); return; }
  ui.storyPrompt.textContent = s.prompt;
  ui.storyText.textContent = '';
  ui.stats.textContent = '';
  setRunning(true);
  say(mode() === 'browser' ? 'Writing in this browser…' : 'Writing on-chain…');
  try {
    if (mode() === 'browser') await writeInBrowser(s);
    else await writeOnChain(s);
  } catch (e) {
    fail(e.message ?? String(e));
  }
});

ui.stop.addEventListener('click', () => worker?.postMessage({ type: 'stop' }));

ui.modelFile.addEventListener('change', async () => {
  const file = ui.modelFile.files?.[0];
  if (!file) return;
  browserInfo = null;
  setState('loading');
  say(`Reading ${file.name}…`);
  const bytes = await file.arrayBuffer();
  ensureWorker().postMessage({ type: 'loadBytes', bytes, name: file.name }, [bytes]);
});

ui.modeChain.addEventListener('change', onModeChange);
ui.modeBrowser.addEventListener('change', onModeChange);

if (!where) {
  ui.modeChain.disabled = true;
  ui.modeChain.parentElement.title = 'Open this page from a canister (<id>.icp0.io, <id>.localhost:4943) for the on-chain mode';
  ui.modeChain.parentElement.querySelector('.hint').textContent = '(open the page from its canister for this)';
  ui.modeBrowser.checked = true;
} else if (new URLSearchParams(window.location.search).get('mode') === 'browser') {
  ui.modeBrowser.checked = true;
}
onModeChange();
connectChain();

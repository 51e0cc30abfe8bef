//! The story page in a real headless Chromium (Debian's `chromium`, over the DevTools protocol):
//! the page and its in-browser engine served from 127.0.0.1, a story written in the browser with
//! the default model and compared with `packer run`'s for the same settings and seed, its speed,
//! the page's responsiveness while it runs, screenshots at desktop and phone widths
//! (target/browser-test/), and the on-chain mode's client (web/page/chain.js with the page's
//! Candid types) against the real canister wasm in the IC emulation harness.
//!
//! Ignored by default: it needs Chromium. tests/run-all.sh runs it with `--ignored` where
//! `chromium` is on PATH (or `$WALSH_CHROMIUM` names one) and says so where not.

use candid::{Encode, Principal};
use serde_json::Value;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use walsh_engine::{Engine, SamplingParams};
use walsh_ic_harness::Harness;
use walsh_tests::browser::{Browser, Page, Reply, Request, StaticServer, chromium_binary};
use walsh_tests::root;

const PROMPT: &str = "Once upon a time";

/// The page's default settings: what a visitor gets by pressing Generate (seed 3 runs the 200
/// tokens to the end; many seeds end the story sooner).
fn settings() -> (usize, SamplingParams) {
    (
        200,
        SamplingParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            seed: 3,
            ..SamplingParams::default()
        },
    )
}

/// The canister in the harness, answering the stand-in's `POST /canister/<method>` (Candid in,
/// Candid out) on its own thread.
fn canister_thread() -> mpsc::Sender<(String, Vec<u8>, mpsc::Sender<Reply>)> {
    let (tx, rx) = mpsc::channel::<(String, Vec<u8>, mpsc::Sender<Reply>)>();
    let wasm = walsh_tests::canister_wasm();
    std::thread::spawn(move || {
        let mut h = Harness::new();
        h.install(
            wasm,
            &Encode!().expect("empty args"),
            vec![Principal::anonymous()],
            Principal::anonymous(),
        )
        .expect("install");
        for (method, arg, reply) in rx {
            let r = match h.query(Principal::anonymous(), &method, &arg) {
                Ok(r) => (
                    200,
                    "application/octet-stream",
                    r.bytes().unwrap_or(&[]).to_vec(),
                ),
                Err(e) => (500, "text/plain", e.to_string().into_bytes()),
            };
            let _ = reply.send(r);
        }
    });
    tx
}

fn server() -> StaticServer {
    let canister = Mutex::new(canister_thread());
    let handler = move |req: &Request| -> Option<Reply> {
        let method = req.path.strip_prefix("/canister/")?;
        if req.method != "POST" {
            return Some((405, "text/plain", b"POST only".to_vec()));
        }
        let (tx, rx) = mpsc::channel();
        canister
            .lock()
            .ok()?
            .send((method.to_string(), req.body.clone(), tx))
            .ok()?;
        rx.recv().ok()
    };
    StaticServer::start(
        vec![
            ("/pkg/", walsh_tests::web_pkg().to_path_buf()),
            ("/models/", root().join("models")),
            ("/", root().join("web/page")),
        ],
        Arc::new(handler),
    )
}

fn packer_run(max_tokens: usize, params: SamplingParams) -> walsh_packer::run::RunResult {
    let bytes = std::fs::read(root().join("models/walsh-default.walsh")).expect("default model");
    let engine = Engine::load(&bytes).expect("loads");
    walsh_packer::run::run(&engine, PROMPT, max_tokens, params, 0, |_| {}).expect("packer run")
}

fn set_settings(page: &mut Page, max_tokens: usize, p: &SamplingParams) {
    page.eval(&format!(
        "(() => {{ const set = (id, v) => {{ document.getElementById(id).value = v; }};
           set('prompt', {PROMPT:?}); set('max-tokens', {max_tokens}); set('temperature', {});
           set('top-k', {}); set('top-p', {}); set('seed', {}); return true; }})()",
        p.temperature, p.top_k, p.top_p, p.seed
    ));
}

/// Presses Generate with a probe that records the longest gap between 10 ms timer ticks on the
/// page's main thread, and waits for the story.
fn generate(page: &mut Page) -> (Value, f64) {
    page.eval(
        "window.__gaps = { last: performance.now(), max: 0 };
         window.__probe = setInterval(() => { const now = performance.now();
           window.__gaps.max = Math.max(window.__gaps.max, now - window.__gaps.last);
           window.__gaps.last = now; }, 10);
         document.getElementById('generate').click(); true",
    );
    page.wait_for(
        "document.body?.dataset.state === 'done' || document.body?.dataset.state === 'error'",
        Duration::from_secs(120),
        "the story",
        "document.getElementById('status')?.textContent",
    );
    let state = page.eval("document.body?.dataset.state");
    assert_eq!(
        state,
        "done",
        "the page reports: {}",
        page.eval("document.getElementById('status')?.textContent")
    );
    let max_gap = page.eval("clearInterval(window.__probe); window.__gaps.max");
    (
        page.eval("window.walshLast"),
        max_gap.as_f64().expect("a number"),
    )
}

#[test]
#[ignore = "needs Chromium: tests/run-all.sh runs it where `chromium` is installed"]
fn story_page_in_headless_chromium() {
    let binary = chromium_binary().expect(
        "no Chromium: install Debian's `chromium` (apt-get install chromium) or set WALSH_CHROMIUM",
    );
    let server = server();
    let browser = Browser::launch(&binary);
    let mut page = browser.page();
    let out = root().join("target/browser-test");
    std::fs::create_dir_all(&out).expect("target/browser-test");

    // Desktop width; the page at 127.0.0.1 has no canister, so it opens in the browser mode
    // and downloads the default model from /models/.
    page.viewport(1280, 900, 1.0, false);
    page.call(
        "Page.navigate",
        serde_json::json!({ "url": server.url("/index.html") }),
    );
    page.wait_for(
        "document.body?.dataset.state === 'ready' || document.body?.dataset.state === 'error'",
        Duration::from_secs(60),
        "the in-browser model loading",
        "document.getElementById('status')?.textContent",
    );
    assert_eq!(
        page.eval("document.body?.dataset.state"),
        "ready",
        "{}",
        page.eval("document.getElementById('status')?.textContent")
    );

    // The page's default settings, 200 tokens sampled: the same text as `packer run`.
    let (max_tokens, params) = settings();
    set_settings(&mut page, max_tokens, &params);
    let (story, max_gap_ms) = generate(&mut page);
    let expected = packer_run(max_tokens, params.clone());
    assert_eq!(
        story["text"], expected.text,
        "in-browser text differs from packer run's"
    );
    assert_eq!(story["tokens"], expected.generated_tokens);
    assert_eq!(story["finish"], expected.finish_reason);
    // The speed below is measured on the tokens generated: up to 200, fewer when the story ends
    // with `<|endoftext|>` (the default of issue 20's second pick ends this one at 116).
    let generated = expected.generated_tokens;
    assert!(generated > 0, "no token generated");
    let shown = page.eval("document.getElementById('story-text').textContent");
    assert_eq!(shown, expected.text, "the page shows the story");
    let tokens_per_second = story["tokensPerSecond"].as_f64().expect("tokens/s");
    let stats = page.eval("document.getElementById('stats').textContent");
    assert!(
        stats.as_str().is_some_and(|s| s.contains("tokens/s")),
        "the page shows the speed: {stats}"
    );
    // Not a timed assertion (speed is docs/BENCHMARKS.md's business): the numbers are printed
    // for the record, and the page's main thread must have kept ticking while the worker ran.
    println!(
        "in-browser: {generated} tokens at {tokens_per_second:.0} tokens/s (decode), prefill {:.1} ms; longest main-thread gap {max_gap_ms:.0} ms",
        story["prefillMs"].as_f64().unwrap_or(f64::NAN)
    );
    assert!(
        max_gap_ms < 1000.0,
        "the page froze for {max_gap_ms:.0} ms while the worker generated"
    );
    std::fs::write(out.join("desktop.png"), page.screenshot()).expect("screenshot written");

    // Greedy: the same text as packer run's too.
    let greedy = SamplingParams::default();
    set_settings(&mut page, 60, &greedy);
    let (story, _) = generate(&mut page);
    assert_eq!(story["text"], packer_run(60, greedy).text);

    // A bad setting is refused with a message, before any work.
    page.eval("document.getElementById('top-p').value = '1.5'; document.getElementById('generate').click(); true");
    assert_eq!(page.eval("document.body?.dataset.state"), "error");
    let message = page.eval("document.getElementById('status')?.textContent");
    assert!(
        message.as_str().is_some_and(|m| m.contains("Top-p")),
        "{message}"
    );

    // Phone width, after a story (what a visitor sees).
    set_settings(&mut page, max_tokens, &params);
    page.viewport(390, 844, 2.0, true);
    let (story, _) = generate(&mut page);
    assert_eq!(story["text"], expected.text);
    let overflow = page.eval("document.documentElement.scrollWidth > window.innerWidth");
    assert_eq!(overflow, false, "the page is wider than a phone's screen");
    std::fs::write(out.join("phone.png"), page.screenshot()).expect("screenshot written");

    on_chain_client(&mut page, max_tokens, &params, &expected);
}

/// web/page/chain.js (the on-chain mode's client) with the page's Candid types (agent.js's
/// idlFactory, encoded and decoded by DFINITY's agent library, as its Actor does) over a
/// transport that posts the Candid bytes to the real canister wasm in the harness. What it leaves
/// out is the agent's HTTP envelope and the replica's signatures, which only a replica can serve.
fn on_chain_client(
    page: &mut Page,
    max_tokens: usize,
    params: &SamplingParams,
    expected: &walsh_packer::run::RunResult,
) {
    let setup = "(async () => {
        const { ChainClient } = await import('/chain.js');
        const { idlFactory } = await import('/agent.js');
        const { IDL } = await import('/vendor/icp-sdk-core.js');
        const service = idlFactory({ IDL });
        const methods = Object.fromEntries(service._fields);
        const call = async (method, arg) => {
          const f = methods[method];
          const body = IDL.encode(f.argTypes, arg === null ? [] : [arg]);
          const r = await fetch('/canister/' + method, { method: 'POST', body });
          if (!r.ok) throw new Error(await r.text());
          return IDL.decode(f.retTypes, new Uint8Array(await r.arrayBuffer()))[0];
        };
        window.__chain = new ChainClient(call);
        window.__call = call;
        return true; })()";
    page.eval(setup);
    let info = page.eval("window.__chain.modelInfo().then((m) => ({ name: m.config.name, embedded: 'embedded' in m.source, blob: Number(m.blob_size) }))");
    assert_eq!(info["embedded"], true, "{info}");
    let default_len = std::fs::metadata(walsh_tests::root().join("models/walsh-default.walsh"))
        .expect("models/walsh-default.walsh")
        .len();
    assert_eq!(info["blob"], default_len, "{info}");
    let write = |page: &mut Page, max_tokens: usize| {
        page.eval(&format!(
            "window.__chain.write({{ prompt: {PROMPT:?}, maxTokens: {max_tokens}, temperature: {}, topK: {}, topP: {}, seed: {} }})
               .then((r) => ({{ text: r.text, tokens: r.generatedTokens, finish: r.finish, queries: r.queries, pieces: r.pieces, instructions: Number(r.instructions) }}))",
            params.temperature, params.top_k, params.top_p, params.seed
        ))
    };
    // A story one query can write: exactly packer run's.
    let story = write(page, 60);
    assert_eq!(story["queries"], 1, "{story}");
    assert_eq!(
        story["text"],
        packer_run(60, params.clone()).text,
        "on-chain text differs from packer run's: {story}"
    );
    // The page's story: one query writes until its instruction budget (or the story's end), as
    // packer run's text begins; continuation queries, where needed, write the rest, and the
    // whole is packer run's story. (Since the panel kernels the default writes its whole context
    // in one query, so the continuation is exercised only by slower models.)
    let story = write(page, max_tokens);
    let first = story["pieces"][0].as_str().expect("the first query's text");
    assert!(
        expected.text.starts_with(first) && !first.is_empty(),
        "the first query's text is not packer run's beginning: {story}"
    );
    assert_eq!(story["tokens"], expected.generated_tokens, "{story}");
    assert_eq!(story["text"], expected.text, "{story}");
    println!(
        "on-chain (harness): {} tokens in {} queries, {} instructions; the first query wrote {} bytes of packer run's text",
        story["tokens"],
        story["queries"],
        story["instructions"],
        first.len()
    );
    // The alternative the page does not take, measured for docs/BENCHMARKS.md: the same 200
    // tokens as ten 20-token queries, each continuing the text so far.
    let short = page.eval(&format!(
        "(async () => {{
           const {{ generateRequest }} = await import('/chain.js');
           let text = ''; let instructions = 0n; let queries = 0; let tokens = 0;
           while (queries < 10) {{
             const r = await window.__call('generate_with', generateRequest({{ prompt: {PROMPT:?} + text, maxTokens: 20, temperature: {}, topK: {}, topP: {}, seed: {} }}));
             queries += 1; text += r.Ok.text; tokens += r.Ok.generated_tokens; instructions += r.Ok.instructions;
             if (!('length' in r.Ok.finish_reason)) break;
           }}
           return {{ queries, tokens, instructions: Number(instructions), same: text === {:?} }}; }})()",
        params.temperature, params.top_k, params.top_p, params.seed, expected.text
    ));
    println!(
        "on-chain (harness), short queries instead: {} tokens in {} queries of 20, {} instructions; same text as one query: {}",
        short["tokens"], short["queries"], short["instructions"], short["same"]
    );
    // Every refusal has a sentence: here a prompt over the byte limit.
    let refused = page.eval(
        "window.__chain.write({ prompt: 'x'.repeat(100000), maxTokens: 5, temperature: 0, topK: 0, topP: 1, seed: 0 })
           .then(() => 'accepted', (e) => e.message)",
    );
    assert!(
        refused
            .as_str()
            .is_some_and(|m| m.starts_with("The prompt is too long: 100,000 bytes")),
        "{refused}"
    );
    let bad = page.eval(
        "window.__chain.write({ prompt: 'Once', maxTokens: 5, temperature: -1, topK: 0, topP: 1, seed: 0 })
           .then(() => 'accepted', (e) => e.message)",
    );
    assert!(
        bad.as_str()
            .is_some_and(|m| m.starts_with("Invalid settings:")),
        "{bad}"
    );
}

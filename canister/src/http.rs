//! The story page (web/page/), served by `http_request` with certified responses
//! (DFINITY's `ic-asset-certification`), so that it loads through the IC's HTTP gateways, which
//! check every response against the canister's certified data. The files are compiled into the
//! wasm (`build.rs` lists them); the default model's blob is published at
//! `/models/walsh-default.walsh` for the page's in-browser mode. An uploaded model is not
//! published: its weights are the operator's (`download_chunk` is for controllers only).

use ic_asset_certification::{Asset, AssetConfig, AssetFallbackConfig, AssetRouter};
use ic_http_certification::{HttpRequest, HttpResponse, StatusCode};
use std::cell::RefCell;

include!(concat!(env!("OUT_DIR"), "/page_files.rs"));

/// Where the page's in-browser mode finds the default model.
pub const DEFAULT_MODEL_PATH: &str = "models/walsh-default.walsh";

thread_local! {
    static ROUTER: RefCell<AssetRouter<'static>> = RefCell::new(AssetRouter::default());
}

/// Headers every response carries (certified with it). The page runs its engine as WebAssembly
/// in a Web Worker ('wasm-unsafe-eval', worker-src) and calls the IC's API (connect-src).
fn security_headers(cache: &str) -> Vec<(String, String)> {
    [
        (
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; \
             connect-src 'self' https://icp-api.io https://icp0.io https://*.icp0.io; \
             img-src 'self' data:; style-src 'self'; object-src 'none'; base-uri 'self'; \
             frame-ancestors 'none'",
        ),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("Cache-Control", cache),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// File names are not content-hashed: browsers revalidate the page's files on every load.
const REVALIDATE: &str = "public, no-cache";

fn configs() -> Vec<AssetConfig> {
    let pattern = |glob: &str, content_type: &str, cache: &str| AssetConfig::Pattern {
        pattern: glob.to_string(),
        content_type: Some(content_type.to_string()),
        headers: security_headers(cache),
        encodings: vec![],
    };
    vec![
        AssetConfig::File {
            path: "index.html".to_string(),
            content_type: Some("text/html; charset=utf-8".to_string()),
            headers: security_headers(REVALIDATE),
            fallback_for: vec![],
            aliased_by: vec!["/".to_string()],
            encodings: vec![],
        },
        AssetConfig::File {
            path: "404.html".to_string(),
            content_type: Some("text/html; charset=utf-8".to_string()),
            headers: security_headers(REVALIDATE),
            fallback_for: vec![AssetFallbackConfig {
                scope: "/".to_string(),
                status_code: Some(StatusCode::NOT_FOUND),
            }],
            aliased_by: vec![],
            encodings: vec![],
        },
        pattern("**/*.js", "text/javascript; charset=utf-8", REVALIDATE),
        pattern("**/*.css", "text/css; charset=utf-8", REVALIDATE),
        pattern("**/*.wasm", "application/wasm", REVALIDATE),
        // The blob changes only with the wasm (a new wasm rebuilds the whole router).
        pattern(
            "**/*.walsh",
            "application/octet-stream",
            "public, max-age=3600",
        ),
    ]
}

/// Certifies the page (and the default model's blob, when the wasm embeds one) and sets the
/// canister's certified data to the tree's root. Runs in init and post_upgrade.
pub fn certify(default_model: Option<&'static [u8]>) {
    let mut assets: Vec<Asset<'static, 'static>> = PAGE_FILES
        .iter()
        .map(|&(path, content)| Asset::new(path, content))
        .collect();
    if let Some(blob) = default_model {
        assets.push(Asset::new(DEFAULT_MODEL_PATH, blob));
    }
    let mut router = AssetRouter::default();
    if let Err(e) = router.certify_assets(assets, configs()) {
        ic_cdk::trap(format!("the story page's files cannot be certified: {e}"));
    }
    ic_cdk::api::certified_data_set(router.root_hash());
    ROUTER.with(|r| *r.borrow_mut() = router);
}

fn plain(status: StatusCode, text: String) -> HttpResponse<'static> {
    HttpResponse::builder()
        .with_status_code(status)
        .with_headers(vec![(
            "Content-Type".to_string(),
            "text/plain; charset=utf-8".to_string(),
        )])
        .with_body(text.into_bytes())
        .build()
}

/// A page file, a certified 404 page for any other path, or an uncertified error a gateway
/// will refuse (a request the router cannot parse, or a call without a data certificate: a
/// replicated call).
pub fn serve(request: &HttpRequest) -> HttpResponse<'static> {
    let Some(certificate) = ic_cdk::api::data_certificate() else {
        return plain(
            StatusCode::BAD_REQUEST,
            "http_request needs a data certificate: call it as a query".to_string(),
        );
    };
    ROUTER.with(|r| match r.borrow().serve_asset(&certificate, request) {
        Ok(response) => response,
        Err(e) => plain(
            StatusCode::BAD_REQUEST,
            format!("cannot serve this request: {e}"),
        ),
    })
}

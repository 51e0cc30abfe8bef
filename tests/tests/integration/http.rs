//! The canister's `http_request` (the story page, canister/src/http.rs) in the IC emulation
//! harness: every file of web/page/ at its path with its content type, `/` as the page, a
//! certified 404 for anything else, the default model's 3.4 MB blob in certified 2 MiB chunks
//! (Range requests, as the HTTP gateway fetches them), and every response checked as an IC HTTP
//! gateway checks it (`ic-response-verification`) against the harness's root key.

use candid::{Decode, Encode, Principal};
use ic_http_certification::{HttpRequest, HttpResponse};
use walsh_ic_harness::Harness;
use walsh_tests::root;

fn installed() -> Harness {
    let mut h = Harness::new();
    h.install(
        walsh_tests::canister_wasm(),
        &Encode!().expect("no args"),
        vec![Principal::anonymous()],
        Principal::anonymous(),
    )
    .expect("install");
    h
}

fn get(
    h: &mut Harness,
    path: &str,
    headers: &[(&str, &str)],
) -> (HttpRequest<'static>, HttpResponse<'static>) {
    let request = HttpRequest::get(path.to_string())
        .with_headers(
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
        .build();
    let r = h
        .query(
            Principal::anonymous(),
            "http_request",
            &Encode!(&request).expect("encode"),
        )
        .expect("http_request never traps");
    let response =
        Decode!(r.bytes().expect("a reply"), HttpResponse<'static>).expect("HttpResponse");
    (request, response)
}

fn header<'a>(r: &'a HttpResponse<'_>, name: &str) -> Option<&'a str> {
    r.headers()
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// What an HTTP gateway does with a response before it gives it to a browser: the certificate
/// (signature under the root key, the canister's certified data, its time), the tree, and the
/// hashes of the request's path and the response's status, headers and body.
fn verify(h: &Harness, request: HttpRequest<'static>, response: HttpResponse<'static>) {
    let status = response.status_code().as_u16();
    let info = ic_response_verification::verify_request_response_pair(
        request,
        response,
        h.canister_id().as_slice(),
        u128::from(h.time()),
        5 * 60 * 1_000_000_000,
        &h.root_key_der(),
        2,
    )
    .unwrap_or_else(|e| panic!("the response (status {status}) does not verify: {e}"));
    assert_eq!(info.verification_version, 2);
    assert!(info.response.is_some(), "the response is certified");
}

#[test]
fn serves_the_page_certified() {
    let mut h = installed();
    let page = root().join("web/page");
    for (path, file, content_type) in [
        ("/", "index.html", "text/html; charset=utf-8"),
        ("/index.html", "index.html", "text/html; charset=utf-8"),
        ("/app.js", "app.js", "text/javascript; charset=utf-8"),
        ("/chain.js", "chain.js", "text/javascript; charset=utf-8"),
        ("/worker.js", "worker.js", "text/javascript; charset=utf-8"),
        ("/style.css", "style.css", "text/css; charset=utf-8"),
        (
            "/vendor/icp-sdk-core.js",
            "vendor/icp-sdk-core.js",
            "text/javascript; charset=utf-8",
        ),
    ] {
        let (req, resp) = get(&mut h, path, &[]);
        assert_eq!(resp.status_code().as_u16(), 200, "{path}");
        assert_eq!(header(&resp, "content-type"), Some(content_type), "{path}");
        assert!(
            header(&resp, "ic-certificate").is_some(),
            "{path}: no IC-Certificate header"
        );
        assert!(header(&resp, "content-security-policy").is_some(), "{path}");
        let expected = std::fs::read(page.join(file)).expect("page file");
        assert_eq!(resp.body(), expected.as_slice(), "{path}");
        verify(&h, req, resp);
    }
}

#[test]
fn unknown_paths_get_a_certified_404_page() {
    let mut h = installed();
    for path in [
        "/nope",
        "/models/other.walsh",
        "/pkg/walsh_web.js",
        "/a/b/c?x=1",
    ] {
        let (req, resp) = get(&mut h, path, &[]);
        assert_eq!(resp.status_code().as_u16(), 404, "{path}");
        assert_eq!(
            header(&resp, "content-type"),
            Some("text/html; charset=utf-8")
        );
        assert!(String::from_utf8_lossy(resp.body()).contains("Not found"));
        verify(&h, req, resp);
    }
}

/// The default model's blob comes whole (200) when it fits one certified chunk of 2 MiB, else in
/// certified chunks: the first answer is a 206 with the total in Content-Range, the rest come by
/// Range requests, and together they are the file.
#[test]
fn serves_the_default_model_in_certified_chunks() {
    const CHUNK: usize = 2 * 1024 * 1024;
    let mut h = installed();
    let expected = std::fs::read(root().join("models/walsh-default.walsh")).expect("model");
    let path = "/models/walsh-default.walsh";
    let (req, first) = get(&mut h, path, &[]);
    assert_eq!(
        header(&first, "content-type"),
        Some("application/octet-stream")
    );
    if expected.len() <= CHUNK {
        assert_eq!(first.status_code().as_u16(), 200);
        assert_eq!(first.body(), &expected[..]);
        verify(&h, req, first);
        return;
    }
    assert_eq!(first.status_code().as_u16(), 206);
    let range = header(&first, "content-range")
        .expect("Content-Range")
        .to_string();
    assert!(range.ends_with(&format!("/{}", expected.len())), "{range}");
    let mut body = first.body().to_vec();
    verify(&h, req, first);
    let mut chunks = 1;
    while body.len() < expected.len() {
        let range = format!("bytes={}-", body.len());
        let (req, resp) = get(&mut h, path, &[("Range", &range)]);
        assert_eq!(resp.status_code().as_u16(), 206, "{range}");
        assert!(!resp.body().is_empty());
        body.extend_from_slice(resp.body());
        verify(&h, req, resp);
        chunks += 1;
    }
    assert_eq!(body, expected);
    assert_eq!(chunks, expected.len().div_ceil(CHUNK));
}

/// http_request called as an update (a replicated call) has no data certificate: it is refused
/// before it runs, as every query method is.
#[test]
fn http_request_is_a_query_only() {
    let mut h = installed();
    let request = HttpRequest::get("/".to_string()).build();
    let err = h
        .update(
            Principal::anonymous(),
            "http_request",
            &Encode!(&request).expect("encode"),
        )
        .expect_err("refused as an update");
    assert!(err.to_string().contains("query method"), "{err}");
}

//! What the story page's browser test (`tests/tests/integration/browser.rs`) drives: a headless Chromium
//! (Debian's `chromium`, nothing that downloads a browser) over the DevTools protocol, and a small
//! HTTP server on 127.0.0.1 that serves the page's files.

use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The Chromium binary: `$WALSH_CHROMIUM`, else `chromium` or `chromium-browser` on PATH.
pub fn chromium_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("WALSH_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|p| p.is_file())
}

/// A headless Chromium, killed when dropped.
pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    port: u16,
}

impl Browser {
    pub fn launch(binary: &Path) -> Browser {
        let profile = tempfile::tempdir().expect("a temporary profile directory");
        let mut child = Command::new(binary)
            .args([
                "--headless=new",
                // Root in a container has no user namespace for the sandbox.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not start: {e}", binary.display()));
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut lines = BufReader::new(stderr).lines();
        let port = loop {
            let Some(Ok(line)) = lines.next() else {
                let _ = child.kill();
                panic!("Chromium exited before it printed its DevTools address");
            };
            if let Some(rest) = line.split("DevTools listening on ws://127.0.0.1:").nth(1) {
                let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
                break port.parse().expect("a port number");
            }
        };
        // Keeps reading Chromium's stderr so that it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Browser {
            child,
            _profile: profile,
            port,
        }
    }

    /// The first page's DevTools session.
    pub fn page(&self) -> Page {
        let list = http_get(self.port, "/json/list");
        let targets: Vec<Value> = serde_json::from_str(&list).expect("/json/list is JSON");
        let ws = targets
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page target");
        let (socket, _) = tungstenite::connect(ws).expect("the DevTools websocket connects");
        Page { socket, next_id: 1 }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_get(port: u16, path: &str) -> String {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("DevTools HTTP connects");
    let mut w = s.try_clone().expect("socket clone");
    write!(
        w,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .expect("request sent");
    let mut reader = BufReader::new(s);
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).expect("response read") == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.trim().eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().expect("a length");
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).expect("body read");
    String::from_utf8(body).expect("UTF-8")
}

/// One page over the DevTools protocol.
pub struct Page {
    socket: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Page {
    /// Sends a command and waits for its answer (events in between are dropped).
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({ "id": id, "method": method, "params": params });
        self.socket
            .send(tungstenite::Message::text(msg.to_string()))
            .expect("DevTools command sent");
        loop {
            let reply = self.socket.read().expect("DevTools answers");
            let tungstenite::Message::Text(text) = reply else {
                continue;
            };
            let v: Value = serde_json::from_str(text.as_str()).expect("DevTools sends JSON");
            if v["id"] == id {
                if let Some(e) = v.get("error") {
                    panic!("DevTools {method} failed: {e}");
                }
                return v["result"].clone();
            }
        }
    }

    /// Evaluates JavaScript (awaiting a promise) and returns its value; a thrown exception fails
    /// the test with its text.
    pub fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "awaitPromise": true, "returnByValue": true }),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("JavaScript threw: {e}\nin: {expression}");
        }
        r["result"]["value"].clone()
    }

    /// Waits until `expression` is true, or fails after `timeout` with `what` and the value of
    /// `diagnosis`.
    pub fn wait_for(&mut self, expression: &str, timeout: Duration, what: &str, diagnosis: &str) {
        let t0 = Instant::now();
        while self.eval(expression) != Value::Bool(true) {
            if t0.elapsed() > timeout {
                panic!(
                    "{what}: not after {timeout:?}; the page says {}",
                    self.eval(diagnosis)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn viewport(&mut self, width: u32, height: u32, scale: f64, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": scale, "mobile": mobile }),
        );
    }

    /// A PNG of the whole page (beyond the viewport).
    pub fn screenshot(&mut self) -> Vec<u8> {
        let r = self.call(
            "Page.captureScreenshot",
            json!({ "format": "png", "captureBeyondViewport": true }),
        );
        let b64 = r["data"].as_str().expect("screenshot data");
        base64_decode(b64)
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let clean: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= value(c) << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

/// A request the server passes to a handler instead of serving a file.
pub struct Request {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
}

/// A handler's answer: status, content type, body.
pub type Reply = (u16, &'static str, Vec<u8>);
type Handler = dyn Fn(&Request) -> Option<Reply> + Send + Sync;

/// An HTTP/1.1 server on 127.0.0.1 (a thread per connection, `Connection: close`): URL
/// prefixes mapped to directories, and a handler asked first.
pub struct StaticServer {
    pub port: u16,
}

impl StaticServer {
    pub fn start(mounts: Vec<(&'static str, PathBuf)>, handler: Arc<Handler>) -> StaticServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("address").port();
        let mounts = Arc::new(mounts);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mounts = mounts.clone();
                let handler = handler.clone();
                std::thread::spawn(move || serve(stream, &mounts, &*handler));
            }
        });
        StaticServer { port }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}

fn serve(stream: TcpStream, mounts: &[(&'static str, PathBuf)], handler: &Handler) {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("/").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let path = target.split('?').next().unwrap_or("/").to_string();
    let request = Request { method, path, body };
    let (status, ctype, body) = handler(&request).unwrap_or_else(|| file(&request.path, mounts));
    let mut stream = reader.into_inner();
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        if status == 200 { "OK" } else { "Error" },
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
}

fn file(path: &str, mounts: &[(&'static str, PathBuf)]) -> Reply {
    let path = if path.ends_with('/') {
        format!("{path}index.html")
    } else {
        path.to_string()
    };
    if path.split('/').any(|seg| seg == "..") {
        return (404, "text/plain", b"not found".to_vec());
    }
    for (prefix, dir) in mounts {
        if let Some(rest) = path.strip_prefix(prefix) {
            let p = dir.join(rest.trim_start_matches('/'));
            if let Ok(bytes) = std::fs::read(&p) {
                return (200, content_type(&p), bytes);
            }
        }
    }
    (404, "text/plain", format!("{path}: not found").into_bytes())
}

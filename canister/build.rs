//! Lists the story page's files for `src/http.rs` to embed: every file under web/page/, and, when
//! `WALSH_WEB_PKG` names the output of web/build.sh, the in-browser engine under pkg/. Without
//! it the page is served without its in-browser mode (and says so), so that a plain
//! `cargo build` of the canister needs no wasm-bindgen.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn files(dir: &Path, prefix: &str, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        panic!("{} cannot be read", dir.display());
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        if path.is_dir() {
            files(&path, &format!("{prefix}{name}/"), out);
        } else {
            out.push((format!("{prefix}{name}"), path));
        }
    }
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let page = manifest.join("../web/page");
    println!("cargo::rerun-if-changed={}", page.display());
    println!("cargo::rerun-if-env-changed=WALSH_WEB_PKG");
    let mut list = Vec::new();
    files(&page, "", &mut list);
    if let Some(pkg) = std::env::var_os("WALSH_WEB_PKG").filter(|p| !p.is_empty()) {
        let pkg = PathBuf::from(pkg);
        for name in ["walsh_web.js", "walsh_web_bg.wasm"] {
            let p = pkg.join(name);
            assert!(
                p.is_file(),
                "WALSH_WEB_PKG={} has no {name}: run web/build.sh first",
                pkg.display()
            );
            println!("cargo::rerun-if-changed={}", p.display());
            list.push((format!("pkg/{name}"), p));
        }
    }
    let mut code = String::from(
        "/// The story page's files: (path, content).\npub const PAGE_FILES: &[(&str, &[u8])] = &[\n",
    );
    for (name, path) in &list {
        let abs = path.canonicalize().expect("the file exists");
        writeln!(
            code,
            "    ({name:?}, include_bytes!({:?})),",
            abs.display().to_string()
        )
        .expect("writing to a String");
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("page_files.rs");
    std::fs::write(out, code).expect("OUT_DIR is writable");
}

//! What dfx knows, read the way dfx reads it: the URL a network name stands for, the id a
//! canister name has on that network, and the key an identity name signs with. Every function
//! takes its directories as arguments; `main.rs` passes the real ones (see [`Dirs::from_env`]).

use candid::Principal;
use ic_agent::Identity;
use ic_agent::identity::{AnonymousIdentity, BasicIdentity, Prime256v1Identity, Secp256k1Identity};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

/// Mainnet's API boundary nodes.
pub const MAINNET_URL: &str = "https://icp-api.io";
/// Where `dfx start` listens unless told otherwise (dfx 0.15 and later).
pub const LOCAL_DEFAULT_BIND: &str = "127.0.0.1:4943";

#[derive(Debug, Error)]
pub enum DfxError {
    #[error("--network {0}: expected `local`, `ic` or an http(s) URL")]
    BadNetwork(String),
    #[error(
        "--canister {name} is a name, and there is no dfx.json in {start} or above it to look it up in: run in the dfx project, or give the canister id"
    )]
    NoProject { name: String, start: PathBuf },
    #[error(
        "--canister {name} is a name, which dfx resolves only for the networks local and ic: with --network {network}, give the canister id"
    )]
    NameOnUrlNetwork { name: String, network: String },
    #[error(
        "canister {name} was never deployed to network {network} from this project ({path} does not exist; `dfx deploy --network {network}` writes it)"
    )]
    NoCanisterIds {
        name: String,
        network: String,
        path: PathBuf,
    },
    #[error("{path} has no canister named {name}{known}")]
    UnknownCanister {
        name: String,
        path: PathBuf,
        known: String,
    },
    #[error(
        "network mismatch: canister {name} has no id for network {network} in {path}, only for {others} (use --network {first})"
    )]
    WrongNetwork {
        name: String,
        network: String,
        path: PathBuf,
        others: String,
        first: String,
    },
    #[error("{path} says canister {name} is {value:?}, which is not a principal")]
    BadCanisterId {
        name: String,
        path: PathBuf,
        value: String,
    },
    #[error("{path} is not valid JSON: {detail}")]
    BadJson { path: PathBuf, detail: String },
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no home directory (HOME is not set) to find dfx's identities in: pass --pem FILE")]
    NoHome,
    #[error("{0:?} is not a dfx identity name")]
    BadIdentityName(String),
    #[error(
        "dfx identity {name} does not exist ({dir} has no identity.pem; `dfx identity list` shows them)"
    )]
    NoIdentity { name: String, dir: PathBuf },
    #[error(
        "dfx identity {name} is encrypted with a password, which packer cannot ask for: export it once with `dfx identity export {name} > {name}.pem`, keep that file private, and pass --pem {name}.pem"
    )]
    EncryptedIdentity { name: String },
    #[error(
        "dfx identity {name} is kept in the system keyring, which packer cannot read: export it once with `dfx identity export {name} > {name}.pem`, keep that file private, and pass --pem {name}.pem"
    )]
    KeyringIdentity { name: String },
    #[error(
        "dfx identity {name} is a hardware (HSM) identity, which packer cannot use: upload with a PEM identity that is a controller"
    )]
    HsmIdentity { name: String },
    #[error(
        "{path} is not a private key packer can use (secp256k1, prime256v1 or Ed25519 PEM): {detail}"
    )]
    BadPem { path: PathBuf, detail: String },
}

/// The directories dfx keeps its state in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dirs {
    /// `~/.config/dfx` (or `$DFX_CONFIG_ROOT/.config/dfx`): identities.
    pub config: Option<PathBuf>,
    /// `~/.local/share/dfx`: the shared local network's state.
    pub data: Option<PathBuf>,
}

impl Dirs {
    /// Where dfx looks on this machine.
    pub fn from_env() -> Dirs {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let config_root = std::env::var_os("DFX_CONFIG_ROOT")
            .map(PathBuf::from)
            .or_else(|| home.clone());
        let data = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .or_else(|| home.map(|h| h.join(".local/share")));
        Dirs {
            config: config_root.map(|r| r.join(".config/dfx")),
            data: data.map(|d| d.join("dfx")),
        }
    }
}

/// The nearest directory at or above `start` with a `dfx.json`.
pub fn project_root(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|d| d.join("dfx.json").is_file())
        .map(Path::to_path_buf)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// `local`, `ic`, or the URL as given.
    pub name: String,
    pub url: String,
    /// Whether the replica's root key is fetched from it. Only for replicas on this machine:
    /// mainnet's key is built into ic-agent, and a fetched one could be a man in the middle's.
    pub fetch_root_key: bool,
}

fn read_json(path: &Path) -> Result<Option<Value>, DfxError> {
    match std::fs::read_to_string(path) {
        Ok(s) => serde_json::from_str(&s)
            .map(Some)
            .map_err(|e| DfxError::BadJson {
                path: path.to_path_buf(),
                detail: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(DfxError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

fn is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The local replica's address, as dfx finds it: the project's `networks.local.bind` in
/// dfx.json, else the port the running replica wrote (the project's own network, then dfx's
/// shared one), else dfx's default.
fn local_url(project: Option<&Path>, data: Option<&Path>) -> Result<String, DfxError> {
    if let Some(p) = project
        && let Some(cfg) = read_json(&p.join("dfx.json"))?
        && let Some(bind) = cfg.pointer("/networks/local/bind").and_then(Value::as_str)
    {
        return Ok(format!("http://{bind}"));
    }
    let port_files = [
        project.map(|p| p.join(".dfx/network/local/webserver-port")),
        data.map(|d| d.join("network/local/webserver-port")),
    ];
    for f in port_files.into_iter().flatten() {
        if let Ok(s) = std::fs::read_to_string(&f)
            && let Ok(port) = s.trim().parse::<u16>()
        {
            return Ok(format!("http://127.0.0.1:{port}"));
        }
    }
    Ok(format!("http://{LOCAL_DEFAULT_BIND}"))
}

/// `--network local|ic|URL`.
pub fn network(arg: &str, project: Option<&Path>, dirs: &Dirs) -> Result<Network, DfxError> {
    match arg {
        "local" => Ok(Network {
            name: "local".into(),
            url: local_url(project, dirs.data.as_deref())?,
            fetch_root_key: true,
        }),
        "ic" => Ok(Network {
            name: "ic".into(),
            url: MAINNET_URL.into(),
            fetch_root_key: false,
        }),
        url if url.starts_with("http://") || url.starts_with("https://") => Ok(Network {
            name: url.into(),
            url: url.into(),
            fetch_root_key: is_loopback(url),
        }),
        other => Err(DfxError::BadNetwork(other.into())),
    }
}

/// `--canister NAME|PRINCIPAL`: a principal as it is; a name from `canister_ids.json` for ic
/// (committed with the project) or `.dfx/local/canister_ids.json` for local, like dfx.
pub fn canister_id(
    arg: &str,
    network: &Network,
    project: Option<&Path>,
    cwd: &Path,
) -> Result<Principal, DfxError> {
    if let Ok(p) = Principal::from_text(arg) {
        return Ok(p);
    }
    let ids_file = match network.name.as_str() {
        "ic" => "canister_ids.json",
        "local" => ".dfx/local/canister_ids.json",
        other => {
            return Err(DfxError::NameOnUrlNetwork {
                name: arg.into(),
                network: other.into(),
            });
        }
    };
    let root = project.ok_or_else(|| DfxError::NoProject {
        name: arg.into(),
        start: cwd.to_path_buf(),
    })?;
    let path = root.join(ids_file);
    let ids = read_json(&path)?.ok_or_else(|| DfxError::NoCanisterIds {
        name: arg.into(),
        network: network.name.clone(),
        path: path.clone(),
    })?;
    let Some(entry) = ids.get(arg) else {
        let names: Vec<&str> = ids
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        return Err(DfxError::UnknownCanister {
            name: arg.into(),
            path,
            known: if names.is_empty() {
                String::new()
            } else {
                format!(" (it has {})", names.join(", "))
            },
        });
    };
    let Some(id) = entry.get(&network.name).and_then(Value::as_str) else {
        let others: Vec<&str> = entry
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        return Err(DfxError::WrongNetwork {
            name: arg.into(),
            network: network.name.clone(),
            path,
            first: others.first().copied().unwrap_or("local").into(),
            others: if others.is_empty() {
                "no network".into()
            } else {
                others.join(", ")
            },
        });
    };
    Principal::from_text(id).map_err(|_| DfxError::BadCanisterId {
        name: arg.into(),
        path,
        value: id.into(),
    })
}

/// Which key signs the calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityChoice {
    /// dfx's default identity (`dfx identity use` sets it).
    DfxDefault,
    Dfx(String),
    Pem(PathBuf),
}

pub struct LoadedIdentity {
    pub identity: Arc<dyn Identity>,
    /// What to call it in messages: the dfx identity's name, or the PEM file.
    pub name: String,
}

/// A private key in PEM, tried as dfx does: secp256k1 (what `dfx identity new` writes),
/// prime256v1, Ed25519 (older dfx).
pub fn identity_from_pem(pem: &[u8], path: &Path) -> Result<Arc<dyn Identity>, DfxError> {
    let secp = match Secp256k1Identity::from_pem(pem) {
        Ok(i) => return Ok(Arc::new(i)),
        Err(e) => e,
    };
    if let Ok(i) = Prime256v1Identity::from_pem(pem) {
        return Ok(Arc::new(i));
    }
    match BasicIdentity::from_pem(pem) {
        Ok(i) => Ok(Arc::new(i)),
        Err(ed) => Err(DfxError::BadPem {
            path: path.to_path_buf(),
            detail: format!("as secp256k1: {secp}; as Ed25519: {ed}"),
        }),
    }
}

fn valid_identity_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
}

fn has(config: &Option<Value>, field: &str) -> bool {
    config
        .as_ref()
        .and_then(|c| c.get(field))
        .is_some_and(|v| !v.is_null())
}

/// Loads the identity the way dfx would sign with it.
pub fn identity(choice: &IdentityChoice, dirs: &Dirs) -> Result<LoadedIdentity, DfxError> {
    let name = match choice {
        IdentityChoice::Pem(path) => {
            let pem = std::fs::read(path).map_err(|e| DfxError::Io {
                path: path.clone(),
                source: e,
            })?;
            return Ok(LoadedIdentity {
                identity: identity_from_pem(&pem, path)?,
                name: path.display().to_string(),
            });
        }
        IdentityChoice::Dfx(name) => name.clone(),
        IdentityChoice::DfxDefault => {
            let config = dirs.config.as_ref().ok_or(DfxError::NoHome)?;
            read_json(&config.join("identity.json"))?
                .and_then(|c| c.get("default").and_then(Value::as_str).map(String::from))
                .unwrap_or_else(|| "default".into())
        }
    };
    if name == "anonymous" {
        return Ok(LoadedIdentity {
            identity: Arc::new(AnonymousIdentity),
            name,
        });
    }
    if !valid_identity_name(&name) {
        return Err(DfxError::BadIdentityName(name));
    }
    let dir = dirs
        .config
        .as_ref()
        .ok_or(DfxError::NoHome)?
        .join("identity")
        .join(&name);
    let config = read_json(&dir.join("identity.json"))?;
    if has(&config, "hsm") {
        return Err(DfxError::HsmIdentity { name });
    }
    if has(&config, "encryption") {
        return Err(DfxError::EncryptedIdentity { name });
    }
    if has(&config, "keyring_identity_suffix") {
        return Err(DfxError::KeyringIdentity { name });
    }
    let path = dir.join("identity.pem");
    match std::fs::read(&path) {
        Ok(pem) => Ok(LoadedIdentity {
            identity: identity_from_pem(&pem, &path)?,
            name,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if dir.join("identity.pem.encrypted").is_file() {
                Err(DfxError::EncryptedIdentity { name })
            } else {
                Err(DfxError::NoIdentity { name, dir })
            }
        }
        Err(e) => Err(DfxError::Io { path, source: e }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// Throwaway test keys (they control nothing). The principals were computed independently
    /// of ic-agent: `openssl ... -pubout -outform DER`, then SHA-224 + 0x02, CRC32, base32.
    const SECP256K1_PEM: &str = "-----BEGIN EC PRIVATE KEY-----
MHQCAQEEIMBNtQOkBStWYPdL0ZQor5A2ckb+PsomaaJm8FIozWQroAcGBSuBBAAK
oUQDQgAEvuRRxYxg4yyYs6SkhkEVPEW5CaclUwiJVRO5tj/Y/nGJ1nxPb/CG2w6e
EH3K5urMnRrPTNPVELC6sf+U6Pa/rg==
-----END EC PRIVATE KEY-----
";
    const SECP256K1_PRINCIPAL: &str =
        "qyciq-57c2h-v6kot-c4yfw-crxqm-lwbik-7hk34-jqsvh-tryuq-antf7-eqe";
    const ED25519_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIOWletpfhkaAUXpyeubw0SRQ5noTX1jaCI/zCDKRkJqq
-----END PRIVATE KEY-----
";
    const ED25519_PRINCIPAL: &str =
        "r56gw-zb4cr-e7ytw-unkwe-qtspf-pjhyw-ayvug-7makf-lqvqm-v2aqw-iae";

    fn write(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
        fs::write(path, text).expect("write");
    }

    fn dirs(home: &Path) -> Dirs {
        Dirs {
            config: Some(home.join(".config/dfx")),
            data: Some(home.join(".local/share/dfx")),
        }
    }

    fn principal(l: &LoadedIdentity) -> String {
        l.identity.sender().expect("sender").to_text()
    }

    #[test]
    fn networks() {
        let t = tempfile::tempdir().expect("tempdir");
        let d = dirs(t.path());
        let project = t.path().join("proj");
        fs::create_dir_all(&project).expect("mkdir");
        // Nothing known: dfx's default port.
        let local = network("local", Some(&project), &d).expect("local");
        assert_eq!(local.url, "http://127.0.0.1:4943");
        assert!(local.fetch_root_key);
        // The shared network's port file, then the project's own, then dfx.json's bind.
        write(
            &t.path()
                .join(".local/share/dfx/network/local/webserver-port"),
            "8080\n",
        );
        assert_eq!(
            network("local", Some(&project), &d).unwrap().url,
            "http://127.0.0.1:8080"
        );
        write(&project.join(".dfx/network/local/webserver-port"), "8081");
        assert_eq!(
            network("local", Some(&project), &d).unwrap().url,
            "http://127.0.0.1:8081"
        );
        write(
            &project.join("dfx.json"),
            r#"{"networks": {"local": {"bind": "127.0.0.1:8000"}}}"#,
        );
        assert_eq!(
            network("local", Some(&project), &d).unwrap().url,
            "http://127.0.0.1:8000"
        );

        let ic = network("ic", None, &d).expect("ic");
        assert_eq!((ic.url.as_str(), ic.fetch_root_key), (MAINNET_URL, false));
        // Root keys are fetched from loopback URLs only.
        for (url, fetch) in [
            ("http://127.0.0.1:4943", true),
            ("http://localhost:8000/", true),
            ("http://[::1]:4943", true),
            ("https://icp-api.io", false),
            ("http://10.0.0.7:4943", false),
        ] {
            assert_eq!(
                network(url, None, &d).unwrap().fetch_root_key,
                fetch,
                "{url}"
            );
        }
        let e = network("mainnet", None, &d).unwrap_err().to_string();
        assert!(e.contains("--network mainnet") && e.contains("URL"), "{e}");
    }

    #[test]
    fn canister_names_resolve_like_dfx() {
        let t = tempfile::tempdir().expect("tempdir");
        let d = dirs(t.path());
        let root = t.path().join("proj");
        let sub = root.join("src/deep");
        fs::create_dir_all(&sub).expect("mkdir");
        write(&root.join("dfx.json"), "{}");
        write(
            &root.join("canister_ids.json"),
            r#"{"walsh": {"ic": "ryjl3-tyaaa-aaaaa-aaaba-cai"}}"#,
        );
        write(
            &root.join(".dfx/local/canister_ids.json"),
            r#"{"walsh": {"local": "bkyz2-fmaaa-aaaaa-qaaaq-cai"}, "other": {"local": "be2us-64aaa-aaaaa-qaabq-cai"}}"#,
        );
        let project = project_root(&sub);
        assert_eq!(project.as_deref(), Some(root.as_path()));
        let local = network("local", project.as_deref(), &d).unwrap();
        let ic = network("ic", project.as_deref(), &d).unwrap();
        let id = |arg: &str, n: &Network| canister_id(arg, n, project.as_deref(), &sub);
        assert_eq!(
            id("walsh", &local).unwrap().to_text(),
            "bkyz2-fmaaa-aaaaa-qaaaq-cai"
        );
        assert_eq!(
            id("walsh", &ic).unwrap().to_text(),
            "ryjl3-tyaaa-aaaaa-aaaba-cai"
        );
        // A principal needs no project.
        let p = canister_id("aaaaa-aa", &ic, None, &sub).unwrap();
        assert_eq!(p, Principal::management_canister());
        // Deployed locally only: a network mismatch, and what to use instead.
        let e = id("other", &ic).unwrap_err().to_string();
        assert!(e.contains("no canister named other (it has walsh)"), "{e}");
        write(
            &root.join("canister_ids.json"),
            r#"{"walsh": {"ic": "ryjl3-tyaaa-aaaaa-aaaba-cai"}, "other": {"local": "be2us-64aaa-aaaaa-qaabq-cai"}}"#,
        );
        let e = id("other", &ic).unwrap_err().to_string();
        assert!(
            e.contains("network mismatch") && e.contains("--network local"),
            "{e}"
        );
        let e = id("nope", &local).unwrap_err().to_string();
        assert!(
            e.contains("no canister named nope") && e.contains("walsh"),
            "{e}"
        );
        // Names need a project, and a named network.
        let e = canister_id("walsh", &local, None, &sub)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no dfx.json"), "{e}");
        let url = network("http://127.0.0.1:4943", None, &d).unwrap();
        let e = id("walsh", &url).unwrap_err().to_string();
        assert!(e.contains("give the canister id"), "{e}");
        // Never deployed to that network from here.
        fs::remove_file(root.join(".dfx/local/canister_ids.json")).unwrap();
        let e = id("walsh", &local).unwrap_err().to_string();
        assert!(
            e.contains("never deployed") && e.contains("dfx deploy"),
            "{e}"
        );
    }

    #[test]
    fn identities_load_like_dfx() {
        let t = tempfile::tempdir().expect("tempdir");
        let d = dirs(t.path());
        let ids = t.path().join(".config/dfx/identity");
        write(&ids.join("default/identity.pem"), SECP256K1_PEM);
        write(&ids.join("old/identity.pem"), ED25519_PEM);
        // No identity.json: the identity called `default`.
        let l = identity(&IdentityChoice::DfxDefault, &d).expect("default");
        assert_eq!(
            (l.name.as_str(), principal(&l).as_str()),
            ("default", SECP256K1_PRINCIPAL)
        );
        // `dfx identity use old` writes identity.json.
        write(
            &t.path().join(".config/dfx/identity.json"),
            r#"{"default": "old"}"#,
        );
        let l = identity(&IdentityChoice::DfxDefault, &d).expect("old");
        assert_eq!(
            (l.name.as_str(), principal(&l).as_str()),
            ("old", ED25519_PRINCIPAL)
        );
        let l = identity(&IdentityChoice::Dfx("default".into()), &d).expect("by name");
        assert_eq!(principal(&l), SECP256K1_PRINCIPAL);
        let l = identity(&IdentityChoice::Pem(ids.join("old/identity.pem")), &d).expect("pem");
        assert_eq!(principal(&l), ED25519_PRINCIPAL);
        let l = identity(&IdentityChoice::Dfx("anonymous".into()), &d).expect("anonymous");
        assert_eq!(principal(&l), Principal::anonymous().to_text());

        // Encrypted (identity.json says so, or only the encrypted file is there), keyring, HSM.
        write(
            &ids.join("locked/identity.json"),
            r#"{"hsm": null, "encryption": {"pw_salt": "x", "file_nonce": [1]}, "keyring_identity_suffix": null}"#,
        );
        write(&ids.join("locked/identity.pem.encrypted"), "....");
        write(&ids.join("locked2/identity.pem.encrypted"), "....");
        write(
            &ids.join("kr/identity.json"),
            r#"{"hsm": null, "encryption": null, "keyring_identity_suffix": "kr"}"#,
        );
        write(
            &ids.join("hw/identity.json"),
            r#"{"hsm": {"pkcs11_lib_path": "/x.so", "key_id": "01"}}"#,
        );
        for (name, words) in [
            ("locked", "encrypted"),
            ("locked2", "encrypted"),
            ("kr", "keyring"),
            ("hw", "HSM"),
        ] {
            let e = identity(&IdentityChoice::Dfx(name.into()), &d)
                .err()
                .unwrap_or_else(|| panic!("{name} loaded"))
                .to_string();
            assert!(e.contains(words), "{e}");
            if name != "hw" {
                assert!(e.contains(&format!("dfx identity export {name}")), "{e}");
            }
        }
        let e = identity(&IdentityChoice::Dfx("ghost".into()), &d)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("does not exist") && e.contains("dfx identity list"),
            "{e}"
        );
        let e = identity(&IdentityChoice::Dfx("../default".into()), &d)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("not a dfx identity name"), "{e}");
        write(
            &t.path().join("junk.pem"),
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        );
        let e = identity(&IdentityChoice::Pem(t.path().join("junk.pem")), &d)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("is not a private key"), "{e}");
    }
}

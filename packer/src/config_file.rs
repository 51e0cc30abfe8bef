//! Model configs in TOML (`configs/*.toml`): the `[model]` table is a SPEC §1 config; other tables
//! (the trainer's) are left to their readers.

use std::path::{Path, PathBuf};
use thiserror::Error;
use walsh_canister::config::{ConfigError, ModelConfig};

#[derive(Debug, Error)]
pub enum ConfigFileError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid TOML: {msg}")]
    Toml { path: PathBuf, msg: String },
    #[error("{path} has no [model] table")]
    NoModel { path: PathBuf },
    #[error("{path}: [model] {msg}")]
    Model { path: PathBuf, msg: String },
    #[error("{path}")]
    Invalid { path: PathBuf, source: ConfigError },
    #[error("--set {0}: expected key=value")]
    BadSet(String),
}

/// Reads the `[model]` table, applies `key=value` overrides (values parsed as TOML, bare strings
/// allowed), and validates the result.
pub fn load_model_config(
    path: &Path,
    overrides: &[String],
) -> Result<ModelConfig, ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let doc: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigFileError::Toml {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
    let mut model = match doc.get("model") {
        Some(toml::Value::Table(t)) => t.clone(),
        _ => {
            return Err(ConfigFileError::NoModel {
                path: path.to_path_buf(),
            });
        }
    };
    for o in overrides {
        let (k, v) = o
            .split_once('=')
            .ok_or_else(|| ConfigFileError::BadSet(o.clone()))?;
        let key = k.trim().trim_start_matches("model.").to_string();
        model.insert(key, set_value(v));
    }
    let cfg: ModelConfig = toml::Value::Table(model)
        .try_into()
        .map_err(|e: toml::de::Error| ConfigFileError::Model {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
    cfg.validate().map_err(|source| ConfigFileError::Invalid {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(cfg)
}

/// The value of a `--set key=value`: parsed as TOML (`4`, `1e-3`, `true`, `"x"`), or else taken as
/// a bare string (`algebra=hadamard`).
pub fn set_value(v: &str) -> toml::Value {
    format!("v = {}", v.trim())
        .parse::<toml::Table>()
        .ok()
        .and_then(|t| t.get("v").cloned())
        .unwrap_or_else(|| toml::Value::String(v.trim().to_string()))
}

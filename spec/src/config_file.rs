//! Config files in TOML (`configs/*.toml`): the `[model]` table is a SPEC §1 config; other tables
//! (the trainer's `[train]`) are read by their owners through [`ConfigFile::table`]. One loader
//! for the packer and the trainer, with `--set key=value` overrides; the model's keys come from
//! [`ModelConfig`] itself, so a field added there is settable everywhere at once.

use crate::config::{ConfigError, ModelConfig};
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigFileError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// toml's own message, line breaks and all: it points at the line and column with a caret.
    #[error("{path} is not valid TOML:\n{msg}")]
    Toml { path: PathBuf, msg: String },
    #[error("{path}: `{table}` is not a table")]
    NotATable { path: PathBuf, table: String },
    #[error("{path} has no [model] table")]
    NoModel { path: PathBuf },
    #[error("{path}: [{table}] {msg}")]
    Table {
        path: PathBuf,
        table: String,
        msg: String,
    },
    #[error("{path}: the [model] table breaks a rule of SPEC §1")]
    Invalid { path: PathBuf, source: ConfigError },
    #[error("--set {0}: expected key=value (e.g. n_layer=4)")]
    BadSet(String),
    #[error("--set {key}: no such setting; [model] has {known}")]
    UnknownKey { key: String, known: String },
}

/// A parsed config file, its tables still open to overrides.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub path: PathBuf,
    doc: toml::Table,
}

impl ConfigFile {
    pub fn read(path: &Path) -> Result<Self, ConfigFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let doc = text
            .parse::<toml::Table>()
            .map_err(|e| ConfigFileError::Toml {
                path: path.to_path_buf(),
                msg: e.to_string().trim_end().to_string(),
            })?;
        Ok(ConfigFile {
            path: path.to_path_buf(),
            doc,
        })
    }

    /// Sets `[table] key = value`, the value parsed as by [`set_value`].
    pub fn set(&mut self, table: &str, key: &str, value: &str) -> Result<(), ConfigFileError> {
        match self
            .doc
            .entry(table)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        {
            toml::Value::Table(t) => {
                t.insert(key.to_string(), set_value(value));
                Ok(())
            }
            _ => Err(self.not_a_table(table)),
        }
    }

    /// `[name]` as a `T`, or `None` if the file has no such table.
    pub fn table<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, ConfigFileError> {
        match self.doc.get(name) {
            None => Ok(None),
            Some(v @ toml::Value::Table(_)) => {
                v.clone()
                    .try_into()
                    .map(Some)
                    .map_err(|e: toml::de::Error| ConfigFileError::Table {
                        path: self.path.clone(),
                        table: name.to_string(),
                        msg: e.message().to_string(),
                    })
            }
            Some(_) => Err(self.not_a_table(name)),
        }
    }

    /// The `[model]` table, checked against every rule of SPEC §1.
    pub fn model(&self) -> Result<ModelConfig, ConfigFileError> {
        let cfg: ModelConfig = self
            .table("model")?
            .ok_or_else(|| ConfigFileError::NoModel {
                path: self.path.clone(),
            })?;
        cfg.validate().map_err(|source| ConfigFileError::Invalid {
            path: self.path.clone(),
            source,
        })?;
        Ok(cfg)
    }

    fn not_a_table(&self, table: &str) -> ConfigFileError {
        ConfigFileError::NotATable {
            path: self.path.clone(),
            table: table.to_string(),
        }
    }
}

/// Splits a `--set key=value`.
pub fn split_set(set: &str) -> Result<(&str, &str), ConfigFileError> {
    match set.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim(), v)),
        _ => Err(ConfigFileError::BadSet(set.to_string())),
    }
}

/// Reads the `[model]` table, applies `key=value` overrides (an optional `model.` prefix; values
/// parsed as TOML, bare strings allowed), and validates the result.
pub fn load_model_config(
    path: &Path,
    overrides: &[String],
) -> Result<ModelConfig, ConfigFileError> {
    let mut file = ConfigFile::read(path)?;
    for o in overrides {
        let (k, v) = split_set(o)?;
        let key = k.strip_prefix("model.").unwrap_or(k);
        if !ModelConfig::keys().contains(&key) {
            return Err(ConfigFileError::UnknownKey {
                key: key.to_string(),
                known: ModelConfig::keys().join(", "),
            });
        }
        file.set("model", key, v)?;
    }
    file.model()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    const MODEL: &str = "[model]\nvocab_size = 50\nn_embd = 16\nn_layer = 1\nn_head = 4\n\
                         block_size = 8\nalgebra = \"dense\"\neos_token_id = 0\n";

    #[test]
    fn overrides_apply_and_bad_ones_are_named() {
        let (_d, path) = write(MODEL);
        let sets = [
            "n_layer=2",
            "model.algebra=octonion",
            "n_embd=64",
            "n_head=8",
        ];
        let cfg = load_model_config(&path, &sets.map(String::from)).unwrap();
        assert_eq!(cfg.n_layer, 2);
        assert_eq!(cfg.algebra, crate::config::Algebra::Octonion);
        let e = load_model_config(&path, &["layers=2".into()]).unwrap_err();
        assert!(
            e.to_string().contains("layers") && e.to_string().contains("n_layer"),
            "{e}"
        );
        let e = load_model_config(&path, &["=2".into()]).unwrap_err();
        assert!(e.to_string().contains("expected key=value"), "{e}");
    }

    #[test]
    fn toml_errors_keep_their_lines() {
        let (_d, path) = write("[model]\nvocab_size = = 3\n");
        let e = load_model_config(&path, &[]).unwrap_err().to_string();
        assert!(e.contains("is not valid TOML:\n") && e.contains('|'), "{e}");
        let (_d, path) = write("model = 3\n");
        let e = load_model_config(&path, &[]).unwrap_err().to_string();
        assert!(e.contains("`model` is not a table"), "{e}");
    }

    #[test]
    fn every_model_key_is_settable() {
        let (_d, path) = write(MODEL);
        for key in ModelConfig::keys() {
            let e = load_model_config(&path, &[format!("{key}=@")]);
            // Every key is known: an error, if any, is about the value, not the key.
            if let Err(e) = e {
                assert!(!e.to_string().contains("no such setting"), "{key}: {e}");
            }
        }
    }
}

//! The trainer's checkpoint format, which the packer reads: a directory with `config.json`,
//! `model.safetensors` (f32 latent weights named per SPEC §3) and `tokenizer.json`.

use crate::config::{ConfigError, ModelConfig};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CheckpointError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}")]
    Config { path: PathBuf, source: ConfigError },
    #[error("{path} is not a valid safetensors file: {msg}")]
    SafeTensors { path: PathBuf, msg: String },
    #[error("tensor `{name}` is {dtype}; checkpoints hold f32 latent weights")]
    NotF32 { name: String, dtype: String },
    #[error("tensor `{0}` is missing from the checkpoint")]
    Missing(String),
    #[error("tensor `{0}` is in the checkpoint but not in the model's config")]
    Unexpected(String),
    #[error("tensor `{name}` has shape {found:?}; the config says {expected:?}")]
    Shape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("tensor `{name}` holds a non-finite value at element {element}")]
    NotFinite { name: String, element: usize },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub config: ModelConfig,
    pub tensors: BTreeMap<String, Tensor>,
    pub tokenizer_json: String,
}

fn read(path: &Path) -> Result<Vec<u8>, CheckpointError> {
    std::fs::read(path).map_err(|source| CheckpointError::Read {
        path: path.to_path_buf(),
        source,
    })
}

impl Checkpoint {
    /// Checks that the tensors are exactly the config's, with the right shapes and finite values.
    pub fn validate(&self) -> Result<(), CheckpointError> {
        let specs = self.config.tensors();
        for spec in &specs {
            let t = self
                .tensors
                .get(&spec.name)
                .ok_or_else(|| CheckpointError::Missing(spec.name.clone()))?;
            if t.shape != spec.shape || t.data.len() != spec.numel() {
                return Err(CheckpointError::Shape {
                    name: spec.name.clone(),
                    expected: spec.shape.clone(),
                    found: t.shape.clone(),
                });
            }
            if let Some(element) = t.data.iter().position(|v| !v.is_finite()) {
                return Err(CheckpointError::NotFinite {
                    name: spec.name.clone(),
                    element,
                });
            }
        }
        if let Some(extra) = self
            .tensors
            .keys()
            .find(|k| !specs.iter().any(|s| &&s.name == k))
        {
            return Err(CheckpointError::Unexpected(extra.clone()));
        }
        Ok(())
    }

    pub fn load(dir: &Path) -> Result<Self, CheckpointError> {
        let config_path = dir.join("config.json");
        let config = ModelConfig::from_json(&read(&config_path)?).map_err(|source| {
            CheckpointError::Config {
                path: config_path,
                source,
            }
        })?;
        let tok_path = dir.join("tokenizer.json");
        let tokenizer_json =
            String::from_utf8(read(&tok_path)?).map_err(|_| CheckpointError::Read {
                path: tok_path,
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8"),
            })?;
        let st_path = dir.join("model.safetensors");
        let tensors = read_safetensors(&st_path)?;
        let ckpt = Checkpoint {
            config,
            tensors,
            tokenizer_json,
        };
        ckpt.validate()?;
        Ok(ckpt)
    }

    /// Writes the checkpoint into a temporary sibling directory (files synced to disk), then
    /// swaps it in: the old `dir` is renamed aside, the new one renamed to `dir`, the old one
    /// removed. An interruption never leaves a half-written checkpoint under `dir`; at worst the
    /// complete old or new one waits under its temporary name (`.NAME.old-PID`/`.NAME.tmp-PID`).
    pub fn save(&self, dir: &Path) -> Result<(), CheckpointError> {
        self.save_with(dir, &[])
    }

    /// [`Checkpoint::save`] with more files in the same directory (the trainer's optimizer state
    /// and `train_state.json`), written and renamed into place with the rest.
    pub fn save_with(&self, dir: &Path, extra: &[(&str, &[u8])]) -> Result<(), CheckpointError> {
        let werr = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CheckpointError::Write { path, source }
        };
        let parent = dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(werr(parent))?;
        let file_name = dir
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = parent.join(format!(".{file_name}.tmp-{}", std::process::id()));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(werr(&tmp))?;
        }
        std::fs::create_dir_all(&tmp).map_err(werr(&tmp))?;
        let write = |name: &str, bytes: &[u8]| -> Result<(), CheckpointError> {
            let path = tmp.join(name);
            let mut f = std::fs::File::create(&path).map_err(werr(&path))?;
            std::io::Write::write_all(&mut f, bytes).map_err(werr(&path))?;
            f.sync_all().map_err(werr(&path))
        };
        write("config.json", self.config.to_json().as_bytes())?;
        write("tokenizer.json", self.tokenizer_json.as_bytes())?;
        for (name, bytes) in extra {
            write(name, bytes)?;
        }
        let bytes = safetensors_bytes(&self.tensors, &tmp.join("model.safetensors"))?;
        write("model.safetensors", &bytes)?;
        if dir.exists() {
            let old = parent.join(format!(".{file_name}.old-{}", std::process::id()));
            std::fs::rename(dir, &old).map_err(werr(dir))?;
            std::fs::rename(&tmp, dir).map_err(werr(dir))?;
            std::fs::remove_dir_all(&old).map_err(werr(&old))?;
        } else {
            std::fs::rename(&tmp, dir).map_err(werr(dir))?;
        }
        Ok(())
    }
}

/// Named f32 tensors as a safetensors file's bytes (`path` names the file in errors).
pub fn safetensors_bytes(
    tensors: &BTreeMap<String, Tensor>,
    path: &Path,
) -> Result<Vec<u8>, CheckpointError> {
    let st_err = |e: safetensors::SafeTensorError| CheckpointError::SafeTensors {
        path: path.to_path_buf(),
        msg: e.to_string(),
    };
    let bytes: Vec<(&String, Vec<u8>, &Vec<usize>)> = tensors
        .iter()
        .map(|(n, t)| {
            (
                n,
                t.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
                &t.shape,
            )
        })
        .collect();
    let views: Vec<(&String, TensorView<'_>)> = bytes
        .iter()
        .map(|(n, b, s)| {
            TensorView::new(Dtype::F32, s.to_vec(), b)
                .map(|v| (*n, v))
                .map_err(st_err)
        })
        .collect::<Result<_, _>>()?;
    safetensors::serialize(views, None).map_err(st_err)
}

/// Reads a safetensors file of f32 tensors.
pub fn read_safetensors(path: &Path) -> Result<BTreeMap<String, Tensor>, CheckpointError> {
    let bytes = read(path)?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| CheckpointError::SafeTensors {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })?;
    let mut tensors = BTreeMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(CheckpointError::NotF32 {
                name,
                dtype: format!("{:?}", view.dtype()),
            });
        }
        let data = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        tensors.insert(
            name,
            Tensor {
                shape: view.shape().to_vec(),
                data,
            },
        );
    }
    Ok(tensors)
}

//! A real sentence-embedding model for the semantic layer: a [Model2Vec] static model read from a
//! directory the operator provides (`search_embedder = "model2vec"`, `search_model_path`).
//!
//! # Why Model2Vec
//!
//! A static model is a tokenizer plus one vector per token; a text's vector is the mean of its
//! tokens' vectors, L2-normalised. That is microseconds per query on a CPU, needs no ONNX runtime or
//! GPU, and the distilled multilingual models (`minishlab/potion-multilingual-128M`) know that
//! "Regenjacke", "rain jacket" and "chubasquero" mean nearly the same thing — which no lexicon of ours
//! will ever list in full. Inference is `model2vec-rs` (the reference Rust implementation), built
//! without its hub/download features: the model is only ever read from local files, so a node never
//! reaches out to the network, and a missing file is an error at start, not a download.
//!
//! # The directory
//!
//! `model.safetensors` (the matrix as `embeddings`, in F32, F16, BF16 or I8, optionally with the
//! `weights` / `mapping` tensors of vocabulary-quantised models), `tokenizer.json` (a Hugging Face
//! tokenizer) and optionally `config.json` (only checked to be JSON; vectors are always normalised,
//! as cosine similarity needs). [`check_model_dir`] looks at what is cheap to check (it runs in
//! config validation, for every command); [`Model2VecEmbedder::load`] reads everything and refuses
//! a tokenizer whose token ids fall outside the matrix (model2vec-rs would index out of bounds).
//!
//! [Model2Vec]: https://github.com/MinishLab/model2vec

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use model2vec_rs::model::StaticModel;
/// The element types of a safetensors file ([`write_model_dir`] writes F32, F16 or I8).
pub use safetensors::tensor::Dtype;
use safetensors::tensor::{SafeTensors, TensorInfo, TensorView};
use serde::Deserialize;
use tokenizers::Tokenizer;

use super::embed::Embedder;

pub const MODEL_FILE: &str = "model.safetensors";
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const CONFIG_FILE: &str = "config.json";
/// Names model2vec gives the embedding matrix, in the order tried (as model2vec-rs does).
const MATRIX_NAMES: [&str; 3] = ["embeddings", "0", "embedding.weight"];
/// A safetensors header larger than this is not a Model2Vec model (real ones are a few hundred bytes).
const MAX_HEADER_BYTES: u64 = 1 << 20;

/// What is wrong with a model directory; the message names the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ModelError(String);

fn err(file: &str, message: impl std::fmt::Display) -> ModelError {
    ModelError(format!("{file}: {message}"))
}

/// What [`check_model_dir`] learnt from the safetensors header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatrixShape {
    pub rows: usize,
    pub dim: usize,
}

/// Cheap checks of a model directory, without reading the matrix or building the tokenizer: the
/// directory and both required files exist, the safetensors header names a 2-D matrix of a supported
/// type whose size matches the file, `tokenizer.json` is a JSON object with a `model`, and
/// `config.json`, when present, is JSON.
pub fn check_model_dir(dir: &Path) -> Result<MatrixShape, ModelError> {
    if !dir.is_dir() {
        return Err(ModelError(format!("{} is not a directory", dir.display())));
    }
    let shape = check_safetensors_header(&dir.join(MODEL_FILE))?;
    let tokenizer = dir.join(TOKENIZER_FILE);
    let file = fs::File::open(&tokenizer).map_err(|e| err(TOKENIZER_FILE, e))?;
    /// Only `model` is looked at; the rest is skipped without being kept.
    #[derive(Deserialize)]
    struct TokenizerShape {
        #[serde(rename = "model")]
        _model: serde::de::IgnoredAny,
    }
    serde_json::from_reader::<_, TokenizerShape>(std::io::BufReader::new(file))
        .map_err(|e| err(TOKENIZER_FILE, format!("not a tokenizer.json ({e})")))?;
    let config = dir.join(CONFIG_FILE);
    if config.exists() {
        let bytes = fs::read(&config).map_err(|e| err(CONFIG_FILE, e))?;
        serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|e| err(CONFIG_FILE, e))?;
    }
    Ok(shape)
}

fn supported(dtype: Dtype) -> bool {
    matches!(dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::I8)
}

/// Reads only the header: 8 bytes of length, then that much JSON.
fn check_safetensors_header(path: &Path) -> Result<MatrixShape, ModelError> {
    let mut file = fs::File::open(path).map_err(|e| err(MODEL_FILE, e))?;
    let file_len = file.metadata().map_err(|e| err(MODEL_FILE, e))?.len();
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(|_| err(MODEL_FILE, "too short to be a safetensors file"))?;
    let header_len = u64::from_le_bytes(len);
    if header_len > MAX_HEADER_BYTES || header_len + 8 > file_len {
        return Err(err(MODEL_FILE, "not a safetensors file (bad header length)"));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(|e| err(MODEL_FILE, e))?;
    let entries: HashMap<String, serde_json::Value> = serde_json::from_slice(&header)
        .map_err(|e| err(MODEL_FILE, format!("not a safetensors file ({e})")))?;
    let mut tensors: HashMap<&str, TensorInfo> = HashMap::new();
    for (name, value) in &entries {
        if name != "__metadata__" {
            let info = serde_json::from_value(value.clone())
                .map_err(|e| err(MODEL_FILE, format!("tensor {name:?}: {e}")))?;
            tensors.insert(name, info);
        }
    }
    let data_end = tensors.values().map(|t| t.data_offsets.1 as u64).max().unwrap_or(0);
    if 8 + header_len + data_end != file_len {
        return Err(err(MODEL_FILE, "truncated or padded: the header does not match the file size"));
    }
    let info = MATRIX_NAMES
        .iter()
        .find_map(|name| tensors.get(name))
        .ok_or_else(|| err(MODEL_FILE, "no embedding matrix (a tensor named `embeddings`)"))?;
    let [rows, dim] = info.shape[..] else {
        return Err(err(MODEL_FILE, format!("the embedding matrix is not 2-D (shape {:?})", info.shape)));
    };
    if !supported(info.dtype) {
        return Err(err(
            MODEL_FILE,
            format!("embedding type {:?} is not supported (F32, F16, BF16, I8)", info.dtype),
        ));
    }
    if rows == 0 || dim == 0 {
        return Err(err(MODEL_FILE, "the embedding matrix is empty"));
    }
    Ok(MatrixShape { rows, dim })
}

/// A Model2Vec static model loaded from local files.
pub struct Model2VecEmbedder {
    model: StaticModel,
    dim: usize,
    vocab: usize,
}

impl std::fmt::Debug for Model2VecEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model2VecEmbedder").field("dim", &self.dim).field("vocab", &self.vocab).finish()
    }
}

fn f32_values(view: &TensorView<'_>, file: &str, name: &str) -> Result<Vec<f32>, ModelError> {
    let raw = view.data();
    Ok(match view.dtype() {
        Dtype::F32 => raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        Dtype::F16 => raw.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        Dtype::BF16 => {
            raw.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
        }
        Dtype::F64 => raw
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            .collect(),
        other => return Err(err(file, format!("tensor {name:?} has unsupported type {other:?}"))),
    })
}

fn index_values(view: &TensorView<'_>) -> Result<Vec<usize>, ModelError> {
    let raw = view.data();
    let values: Vec<i64> = match view.dtype() {
        Dtype::I64 => raw
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
            .collect(),
        Dtype::I32 => {
            raw.chunks_exact(4).map(|b| i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))).collect()
        }
        other => return Err(err(MODEL_FILE, format!("tensor \"mapping\" has unsupported type {other:?}"))),
    };
    values
        .into_iter()
        .map(|v| usize::try_from(v).map_err(|_| err(MODEL_FILE, "tensor \"mapping\" has a negative row")))
        .collect()
}

impl Model2VecEmbedder {
    /// Reads the model directory (see the module docs). Nothing is downloaded.
    pub fn load(dir: &Path) -> Result<Model2VecEmbedder, ModelError> {
        check_model_dir(dir)?;
        let tokenizer_bytes = fs::read(dir.join(TOKENIZER_FILE)).map_err(|e| err(TOKENIZER_FILE, e))?;
        let tokenizer = Tokenizer::from_bytes(&tokenizer_bytes).map_err(|e| err(TOKENIZER_FILE, e))?;
        drop(tokenizer_bytes);
        let vocab = tokenizer.get_vocab(true);
        let max_id = vocab.values().copied().max().map_or(0, |id| id as usize);

        let bytes = fs::read(dir.join(MODEL_FILE)).map_err(|e| err(MODEL_FILE, e))?;
        let tensors = SafeTensors::deserialize(&bytes).map_err(|e| err(MODEL_FILE, e))?;
        let matrix = MATRIX_NAMES
            .iter()
            .find_map(|name| tensors.tensor(name).ok())
            .ok_or_else(|| err(MODEL_FILE, "no embedding matrix (a tensor named `embeddings`)"))?;
        let [rows, dim] = matrix.shape()[..] else {
            return Err(err(MODEL_FILE, "the embedding matrix is not 2-D"));
        };
        let weights = match tensors.tensor("weights") {
            Ok(view) => Some(f32_values(&view, MODEL_FILE, "weights")?),
            Err(_) => None,
        };
        let mapping = match tensors.tensor("mapping") {
            Ok(view) => Some(index_values(&view)?),
            Err(_) => None,
        };
        // model2vec-rs indexes the matrix with the token id (through `mapping` when present) unchecked.
        for id in 0..=max_id {
            let row = mapping.as_ref().and_then(|m| m.get(id)).copied().unwrap_or(id);
            if row >= rows {
                return Err(ModelError(format!(
                    "{TOKENIZER_FILE} and {MODEL_FILE} do not belong together: token id {id} maps to row {row}, the matrix has {rows} rows"
                )));
            }
        }
        let model = match matrix.dtype() {
            Dtype::I8 => {
                let data = matrix.data().iter().map(|&b| b as i8).collect();
                StaticModel::from_owned_i8(tokenizer, data, rows, dim, true, weights, mapping)
            }
            _ => {
                let data = f32_values(&matrix, MODEL_FILE, "embeddings")?;
                StaticModel::from_owned(tokenizer, data, rows, dim, true, weights, mapping)
            }
        }
        .map_err(|e| err(MODEL_FILE, e))?;
        Ok(Model2VecEmbedder { model, dim, vocab: vocab.len() })
    }

    /// Tokens the tokenizer knows (added tokens included).
    pub fn vocab_size(&self) -> usize {
        self.vocab
    }
}

impl Embedder for Model2VecEmbedder {
    fn name(&self) -> &'static str {
        "model2vec"
    }

    fn dim(&self) -> usize {
        self.dim
    }

    /// Mean of the token vectors, L2-normalised; all zeros when the model knows none of the tokens.
    /// A tokenizer failure (model2vec-rs panics on one) also gives zeros: a product or query the model
    /// cannot read is ranked lexically instead of failing the index build or the request.
    fn embed(&self, text: &str) -> Vec<f32> {
        let mut v = catch_unwind(AssertUnwindSafe(|| self.model.encode_single(text)))
            .unwrap_or_else(|_| vec![0.0; self.dim]);
        if v.len() != self.dim || v.iter().any(|x| !x.is_finite()) {
            v = vec![0.0; self.dim];
        }
        v
    }
}

/// Writes a small Model2Vec model directory: a WordPiece `tokenizer.json` (BERT normaliser and
/// pre-tokenizer, lower-casing and accent stripping) whose vocabulary is `[UNK]` followed by
/// `words`, and `model.safetensors` with a zero row for `[UNK]` and then `vectors` (row-major, one row
/// of `vectors.len() / words.len()` numbers per word), stored as `dtype` (F32, F16 or I8, the last
/// scaled by 127). For tests and benchmarks: real models come from model2vec's distillation.
pub fn write_model_dir(dir: &Path, words: &[&str], vectors: &[f32], dtype: Dtype) -> Result<(), ModelError> {
    if words.is_empty() || !vectors.len().is_multiple_of(words.len()) {
        return Err(ModelError("write_model_dir: one row of vectors per word".into()));
    }
    let dim = vectors.len() / words.len();
    fs::create_dir_all(dir).map_err(|e| ModelError(format!("{}: {e}", dir.display())))?;
    let mut vocab = serde_json::Map::new();
    vocab.insert("[UNK]".into(), 0.into());
    for (i, w) in words.iter().enumerate() {
        vocab.insert((*w).to_string(), (i + 1).into());
    }
    let tokenizer = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [{"id": 0, "content": "[UNK]", "single_word": false, "lstrip": false, "rstrip": false,
                          "normalized": false, "special": true}],
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                       "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": null,
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab},
    });
    let text = serde_json::to_vec_pretty(&tokenizer).map_err(|e| err(TOKENIZER_FILE, e))?;
    fs::write(dir.join(TOKENIZER_FILE), text).map_err(|e| err(TOKENIZER_FILE, e))?;
    let rows: Vec<f32> = std::iter::repeat_n(0.0, dim).chain(vectors.iter().copied()).collect();
    let data: Vec<u8> = match dtype {
        Dtype::F32 => rows.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Dtype::F16 => rows.iter().flat_map(|x| half::f16::from_f32(*x).to_le_bytes()).collect(),
        Dtype::I8 => rows.iter().map(|x| (x * 127.0).round().clamp(-127.0, 127.0) as i8 as u8).collect(),
        other => return Err(err(MODEL_FILE, format!("write_model_dir: {other:?} is not supported"))),
    };
    let view = TensorView::new(dtype, vec![words.len() + 1, dim], &data).map_err(|e| err(MODEL_FILE, e))?;
    safetensors::serialize_to_file([("embeddings", view)], &None, &dir.join(MODEL_FILE))
        .map_err(|e| err(MODEL_FILE, e))?;
    let config = serde_json::json!({"model_type": "model2vec", "normalize": true, "hidden_dim": dim});
    fs::write(dir.join(CONFIG_FILE), config.to_string()).map_err(|e| err(CONFIG_FILE, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    /// Four directions: rain wear, cups, tents, and a word halfway between rain wear and tents.
    fn toy_model(dtype: Dtype) -> (tempfile::TempDir, Model2VecEmbedder) {
        let dir = tempfile::tempdir().unwrap();
        let words = ["cagoule", "raincoat", "waterproof", "teacup", "mug", "tent", "shelter"];
        #[rustfmt::skip]
        let vectors = [
            1.0, 0.1, 0.0, 0.0,
            0.9, 0.0, 0.1, 0.0,
            0.8, 0.0, 0.2, 0.1,
            0.0, 1.0, 0.0, 0.1,
            0.1, 0.9, 0.0, 0.0,
            0.0, 0.0, 1.0, 0.0,
            0.5, 0.0, 0.7, 0.0,
        ];
        write_model_dir(dir.path(), &words, &vectors, dtype).unwrap();
        let model = Model2VecEmbedder::load(dir.path()).unwrap();
        (dir, model)
    }

    #[test]
    fn a_written_model_loads_and_embeds_deterministic_unit_vectors() {
        let (dir, e) = toy_model(Dtype::F32);
        assert_eq!(check_model_dir(dir.path()).unwrap(), MatrixShape { rows: 8, dim: 4 });
        assert_eq!((e.dim(), e.vocab_size(), e.name()), (4, 8, "model2vec"));
        let a = e.embed("Waterproof CAGOULE, size M");
        assert_eq!(a, e.embed("Waterproof CAGOULE, size M"));
        assert_eq!(a, e.embed("waterproof cagoule"), "unknown tokens are left out of the mean");
        assert!((cosine(&a, &a) - 1.0).abs() < 1e-5);
        assert!(e.embed("nothing known here 🙂").iter().all(|x| *x == 0.0));
        assert!(e.embed("").iter().all(|x| *x == 0.0));
    }

    #[test]
    fn words_with_close_vectors_rank_closer() {
        let (_dir, e) = toy_model(Dtype::F32);
        let q = e.embed("cagoule");
        let close = cosine(&q, &e.embed("raincoat"));
        let middle = cosine(&q, &e.embed("shelter"));
        let far = cosine(&q, &e.embed("teacup"));
        assert!(close > middle && middle > far, "{close} {middle} {far}");
        let cups = e.embed("a mug and a teacup");
        assert!(cosine(&cups, &e.embed("teacup")) > cosine(&cups, &e.embed("tent")));
    }

    #[test]
    fn half_precision_and_int8_models_give_nearly_the_same_vectors() {
        let (_a, f32_model) = toy_model(Dtype::F32);
        let (_b, f16_model) = toy_model(Dtype::F16);
        let (_c, i8_model) = toy_model(Dtype::I8);
        for text in ["cagoule", "mug tent", "raincoat shelter waterproof"] {
            let exact = f32_model.embed(text);
            assert!(cosine(&exact, &f16_model.embed(text)) > 0.999, "{text}");
            assert!(cosine(&exact, &i8_model.embed(text)) > 0.99, "{text}");
        }
    }

    #[test]
    fn broken_model_directories_are_refused_naming_the_file() {
        let missing = Path::new("/nonexistent/kifly-model");
        assert!(check_model_dir(missing).unwrap_err().to_string().contains("not a directory"));

        let (dir, _) = toy_model(Dtype::F32);
        let model = dir.path().join(MODEL_FILE);
        let bytes = fs::read(&model).unwrap();
        fs::write(&model, &bytes[..bytes.len() - 4]).unwrap();
        let e = check_model_dir(dir.path()).unwrap_err().to_string();
        assert!(e.starts_with(MODEL_FILE) && e.contains("file size"), "{e}");
        fs::write(&model, b"not a model at all").unwrap();
        assert!(check_model_dir(dir.path()).unwrap_err().to_string().starts_with(MODEL_FILE));

        let (dir, _) = toy_model(Dtype::F32);
        fs::write(dir.path().join(TOKENIZER_FILE), b"{\"version\": \"1.0\"}").unwrap();
        let e = check_model_dir(dir.path()).unwrap_err().to_string();
        assert!(e.starts_with(TOKENIZER_FILE), "{e}");
        fs::remove_file(dir.path().join(TOKENIZER_FILE)).unwrap();
        assert!(check_model_dir(dir.path()).unwrap_err().to_string().starts_with(TOKENIZER_FILE));

        let (dir, _) = toy_model(Dtype::F32);
        fs::write(dir.path().join(CONFIG_FILE), b"{oops").unwrap();
        assert!(check_model_dir(dir.path()).unwrap_err().to_string().starts_with(CONFIG_FILE));
        fs::remove_file(dir.path().join(CONFIG_FILE)).unwrap();
        assert!(Model2VecEmbedder::load(dir.path()).is_ok(), "config.json is optional");

        // A tokenizer with more tokens than the matrix has rows.
        let (dir, _) = toy_model(Dtype::F32);
        let small = tempfile::tempdir().unwrap();
        write_model_dir(small.path(), &["cagoule"], &[1.0, 0.0, 0.0, 0.0], Dtype::F32).unwrap();
        fs::copy(small.path().join(MODEL_FILE), dir.path().join(MODEL_FILE)).unwrap();
        let e = Model2VecEmbedder::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("do not belong together"), "{e}");
    }
}

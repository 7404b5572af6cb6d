//! The optional semantic layer: an [`Embedder`] turns text into a unit vector, and the index blends
//! cosine similarity with the lexical score (see `Index::blend`). Off unless `search_embedder` is set.
//!
//! Two embedders: [`NgramEmbedder`] (`ngram`), hashed character trigrams of the folded words —
//! deterministic, no model file — which catches spelling variants and shared word roots across
//! languages, not meaning; and [`super::model2vec::Model2VecEmbedder`] (`model2vec`), a real static
//! embedding model the operator puts on disk. Another model plugs in by implementing [`Embedder`] and
//! adding a `search_embedder` value for it in [`super::load_embedder`]. Nothing is ever fetched at run
//! time.

use super::text::tokenize;

/// Turns text into a vector of [`Embedder::dim`] numbers with unit length (or all zeros).
pub trait Embedder: Send + Sync {
    /// The `search_embedder` config value naming this embedder.
    fn name(&self) -> &'static str;
    fn dim(&self) -> usize;
    fn embed(&self, text: &str) -> Vec<f32>;
}

/// Hashed character-trigram bag (FNV-1a, signed buckets), L2-normalised.
pub struct NgramEmbedder {
    dim: usize,
}

impl NgramEmbedder {
    pub fn new(dim: usize) -> NgramEmbedder {
        NgramEmbedder { dim: dim.max(8) }
    }
}

impl Default for NgramEmbedder {
    fn default() -> Self {
        NgramEmbedder::new(256)
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

impl Embedder for NgramEmbedder {
    fn name(&self) -> &'static str {
        "ngram"
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn embed(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0f32; self.dim];
        for word in tokenize(text) {
            let padded: Vec<char> = format!("^{word}$").chars().collect();
            for gram in padded.windows(3) {
                let gram: String = gram.iter().collect();
                let h = fnv1a(gram.as_bytes());
                let bucket = (h % self.dim as u64) as usize;
                v[bucket] += if h >> 63 == 0 { 1.0 } else { -1.0 };
            }
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn ngram_vectors_are_deterministic_unit_vectors_that_favour_shared_roots() {
        let e = NgramEmbedder::default();
        let a = e.embed("Merino wool socks");
        assert_eq!(a, e.embed("merino WOOL socks"));
        assert!((cosine(&a, &a) - 1.0).abs() < 1e-4);
        let close = cosine(&e.embed("chaqueta impermeable"), &e.embed("impermeable rain jacket"));
        let far = cosine(&e.embed("chaqueta impermeable"), &e.embed("espresso cups"));
        assert!(close > far, "{close} vs {far}");
        assert!(e.embed("🙂 !!!").iter().all(|x| *x == 0.0));
    }
}

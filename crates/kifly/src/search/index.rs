//! The in-memory inverted index and its scorer.
//!
//! Terms live in two dictionaries over one postings table: *surface* terms (the folded word as
//! written) and *stem* terms (every distinct stem of the word in the six languages). A query word is
//! expanded into weighted alternatives — the word itself (1.0), its stems (0.9), curated synonyms and
//! translations (0.8 × …), typo corrections (0.75 × …) and, for unknown words, completions of a
//! prefix (0.7) — and each document keeps, per query word, its best `quality × field weight ×
//! saturation`. The document's score is the IDF-weighted mean of those per-word bests, so a product
//! whose title contains every query word scores 1.0 and the score is always in `[0, 1]`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use kifly_store::{Product, Seller};

use super::embed::Embedder;
use super::text::{Lexicon, PHRASE_JOINER, split_compound, stems, tokenize};

/// Where a word was found, and how much that says about the product.
#[derive(Clone, Copy)]
enum Field {
    Title = 0,
    Brand = 1,
    Category = 2,
    Description = 3,
    /// Variant names and options, SKUs, the product handle and the seller's name.
    Extra = 4,
}
const FIELDS: usize = 5;
const FIELD_WEIGHT: [f32; FIELDS] = [1.0, 0.6, 0.7, 0.45, 0.3];

const QUALITY_STEM: f32 = 0.9;
const QUALITY_SYNONYM: f32 = 0.8;
const QUALITY_TYPO: f32 = 0.75;
const QUALITY_PREFIX: f32 = 0.7;
/// A part of a split compound ("jacke" of "regenjacke") counts a little less than a word as typed.
const QUALITY_COMPOUND_PART: f32 = 0.9;
/// BM25's term-frequency saturation and length normalisation.
const K1: f32 = 1.2;
const B: f32 = 0.75;
/// Query words beyond this many are ignored (bounds the work of a 500-character query).
const MAX_QUERY_WORDS: usize = 24;
/// Completions considered for an unknown prefix.
const MAX_PREFIX_EXPANSIONS: usize = 24;
/// Words at least this long tolerate one typo; at least [`TYPO2_CHARS`], two.
const TYPO1_CHARS: usize = 4;
const TYPO2_CHARS: usize = 8;

/// A word occurrence while building: where and how often.
#[derive(Clone, Copy)]
struct RawPosting {
    doc: u32,
    field: u8,
    tf: u16,
}

/// A term in one document, with its query-independent weight precomputed: the best over fields of
/// `field weight × BM25 saturation` (so a query only multiplies by the match quality).
#[derive(Clone, Copy)]
struct Posting {
    doc: u32,
    weight: f32,
}

struct DocMeta {
    seller_id: String,
    category: String,
    lens: [u16; FIELDS],
}

/// One search hit: the product's position in [`Index::products`] and its score in `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub doc: usize,
    pub score: f32,
}

/// The outcome of [`Index::search`].
#[derive(Debug, Default)]
pub struct Ranked {
    /// How many products reach the similarity floor.
    pub matches: usize,
    /// The best of them (as many as asked for), best first.
    pub top: Vec<Hit>,
    /// The best few products under the floor, best first.
    pub near: Vec<Hit>,
}

/// One alternative of a query word in [`Index::explain`]: the term (`~` marks a stem), its
/// quality, and how many products it reaches.
pub type Expansion = (String, f32, usize);

/// Sub-floor hits kept for suggestions.
const NEAR_MISSES: usize = 3;

/// A search over the index.
#[derive(Debug, Default, Clone)]
pub struct SearchQuery<'a> {
    /// The text; `None` browses.
    pub text: Option<&'a str>,
    /// Only products of this seller id.
    pub seller_id: Option<&'a str>,
    /// Only products of this category (compared case-insensitively, as the store does).
    pub category: Option<&'a str>,
}

/// Semantic vectors of every product, when an embedder is configured, in a compact layout: each
/// unit vector quantised to `i8` with its own scale (`x ≈ code × scale`, rows padded with zeros to
/// [`LANES`]). A quarter of the memory of `f32`, and the integer dot product vectorises without
/// `-ffast-math`, so comparing the query with every product of a 100,000-product catalog takes a
/// few milliseconds. The quantisation error of a cosine is under 0.01.
struct Semantic {
    embedder: Arc<dyn Embedder>,
    weight: f32,
    dim: usize,
    /// `dim` rounded up to a multiple of [`LANES`].
    stride: usize,
    codes: Vec<i8>,
    /// Per product; 0 when the embedder gave a zero vector (no opinion about that product).
    scales: Vec<f32>,
}

/// Row padding of the quantised vectors, so the dot product runs on whole SIMD blocks.
const LANES: usize = 32;
/// Cosine similarity under this counts as no similarity at all; above it, it is rescaled to [0, 1].
const MIN_COSINE: f32 = 0.3;

/// Quantises `v` into `out` (same length or longer, zero-filled) and returns the scale, 0 for a zero
/// or non-finite vector.
fn quantize(v: &[f32], out: &mut [i8]) -> f32 {
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    if !(max.is_finite() && max > 0.0) || v.iter().any(|x| x.is_nan()) {
        return 0.0;
    }
    let scale = max / 127.0;
    for (o, x) in out.iter_mut().zip(v) {
        *o = (x / scale).round().clamp(-127.0, 127.0) as i8;
    }
    scale
}

/// `Σ a·b` over `i8` codes, in `i32` (at most 127² per lane, so no overflow below 130,000 lanes).
fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    a.chunks_exact(LANES)
        .zip(b.chunks_exact(LANES))
        .map(|(x, y)| x.iter().zip(y).map(|(&p, &q)| i32::from(i16::from(p) * i16::from(q))).sum::<i32>())
        .sum()
}

impl Semantic {
    fn build(embedder: Arc<dyn Embedder>, weight: f32, products: &[Product]) -> Semantic {
        let dim = embedder.dim().max(1);
        let stride = dim.div_ceil(LANES) * LANES;
        let mut codes = vec![0i8; products.len() * stride];
        let mut scales = Vec::with_capacity(products.len());
        for (p, row) in products.iter().zip(codes.chunks_exact_mut(stride)) {
            let text = format!("{} {} {} {}", p.title, p.brand, p.category, p.description);
            let v = embedder.embed(&text);
            scales.push(if v.len() == dim { quantize(&v, row) } else { 0.0 });
        }
        Semantic { embedder, weight: weight.clamp(0.0, 1.0), dim, stride, codes, scales }
    }

    /// The query's codes and scale, or `None` when the embedder has nothing to say about it.
    fn query(&self, text: &str) -> Option<(Vec<i8>, f32)> {
        let v = self.embedder.embed(text);
        let mut codes = vec![0i8; self.stride];
        let scale = if v.len() == self.dim { quantize(&v, &mut codes) } else { 0.0 };
        (scale > 0.0).then_some((codes, scale))
    }

    /// The semantic score of a product in `[0, 1]`, or `None` when the product has no vector.
    fn similarity(&self, doc: usize, query: &[i8], query_scale: f32) -> Option<f32> {
        let scale = self.scales[doc];
        if scale == 0.0 {
            return None;
        }
        let row = &self.codes[doc * self.stride..(doc + 1) * self.stride];
        let cosine = dot_i8(row, query) as f32 * scale * query_scale;
        Some(((cosine - MIN_COSINE) / (1.0 - MIN_COSINE)).clamp(0.0, 1.0))
    }
}

/// A word of the query as scored: the word, the compound it was split from (if it was), and the terms
/// it expands to with their quality (already scaled down for compound parts). Expanded once here,
/// since deciding whether to split a word needs its expansion anyway.
struct QueryWord {
    word: String,
    compound: Option<String>,
    terms: Vec<(u32, f32)>,
}

/// An immutable snapshot of the catalog and its index. Rebuilt (never mutated) when the catalog
/// changes; readers hold an `Arc` to whichever snapshot was current when they started.
pub struct Index {
    /// Every product, in catalog order (seller handle, then position).
    pub products: Vec<Product>,
    /// Every seller, by id.
    pub sellers: BTreeMap<String, Seller>,
    docs: Vec<DocMeta>,
    surface: HashMap<Box<str>, u32>,
    stem: HashMap<Box<str>, u32>,
    postings: Vec<Vec<Posting>>,
    /// Known words sorted, for prefix completion (only words present in documents).
    sorted_words: Vec<Box<str>>,
    /// Typo targets: document words and synonym-table words.
    typo_words: Vec<Box<str>>,
    /// SymSpell-style map: each typo target with one character deleted (and unchanged) → targets.
    deletes: HashMap<Box<str>, Vec<u32>>,
    /// Typo targets by (first char, length), for the rarer distance-2 scan.
    by_shape: HashMap<(char, usize), Vec<u32>>,
    lexicon: &'static Lexicon,
    semantic: Option<Semantic>,
}

fn deletes_of(word: &str) -> Vec<String> {
    let chars: Vec<char> = word.chars().collect();
    (0..chars.len())
        .map(|skip| chars.iter().enumerate().filter(|(i, _)| *i != skip).map(|(_, c)| c).collect())
        .collect()
}

impl Index {
    /// Builds the index over `products` (in catalog order) and their `sellers`.
    pub fn build(
        products: Vec<Product>,
        sellers: Vec<Seller>,
        embedder: Option<(Arc<dyn Embedder>, f32)>,
    ) -> Index {
        let lexicon = Lexicon::builtin();
        let sellers: BTreeMap<String, Seller> = sellers.into_iter().map(|s| (s.id.clone(), s)).collect();
        let mut surface: HashMap<Box<str>, u32> = HashMap::new();
        let mut stem: HashMap<Box<str>, u32> = HashMap::new();
        let mut postings: Vec<Vec<RawPosting>> = Vec::new();
        let mut stem_cache: HashMap<String, Vec<String>> = HashMap::new();
        let mut docs = Vec::with_capacity(products.len());
        let mut total_len = [0f64; FIELDS];

        let term_id =
            |map: &mut HashMap<Box<str>, u32>, postings: &mut Vec<Vec<RawPosting>>, key: &str| -> u32 {
                if let Some(&id) = map.get(key) {
                    return id;
                }
                let id = postings.len() as u32;
                postings.push(Vec::new());
                map.insert(key.into(), id);
                id
            };

        for (doc, p) in products.iter().enumerate() {
            let seller_name = sellers.get(&p.seller_id).map(|s| s.name.as_str()).unwrap_or_default();
            let mut extra = format!("{} {}", p.handle, seller_name);
            for v in &p.variants {
                extra.push(' ');
                extra.push_str(&v.name);
                extra.push(' ');
                extra.push_str(&v.sku);
                for value in v.options.values() {
                    extra.push(' ');
                    extra.push_str(value);
                }
            }
            let fields: [(Field, &str); FIELDS] = [
                (Field::Title, &p.title),
                (Field::Brand, &p.brand),
                (Field::Category, &p.category),
                (Field::Description, &p.description),
                (Field::Extra, &extra),
            ];
            let mut lens = [0u16; FIELDS];
            for (field, text) in fields {
                let words: Vec<String> =
                    tokenize(text).into_iter().filter(|w| !lexicon.is_stopword(w)).collect();
                lens[field as usize] = words.len().min(u16::MAX as usize) as u16;
                total_len[field as usize] += words.len() as f64;
                // term id → tf, surface and stem terms alike (ids are shared).
                let mut counts: HashMap<u32, u16> = HashMap::new();
                for word in &words {
                    let id = term_id(&mut surface, &mut postings, word);
                    let tf = counts.entry(id).or_default();
                    *tf = tf.saturating_add(1);
                    let word_stems = stem_cache.entry(word.clone()).or_insert_with(|| stems(word));
                    for s in word_stems.iter() {
                        let id = term_id(&mut stem, &mut postings, s);
                        let tf = counts.entry(id).or_default();
                        *tf = tf.saturating_add(1);
                    }
                }
                let mut counts: Vec<(u32, u16)> = counts.into_iter().collect();
                counts.sort_unstable();
                for (id, tf) in counts {
                    postings[id as usize].push(RawPosting { doc: doc as u32, field: field as u8, tf });
                }
            }
            docs.push(DocMeta { seller_id: p.seller_id.clone(), category: p.category.to_lowercase(), lens });
        }
        let n = products.len().max(1) as f64;
        let avg_len = total_len.map(|total| ((total / n) as f32).max(1.0));
        let postings: Vec<Vec<Posting>> = postings
            .into_iter()
            .map(|raw| {
                let mut out: Vec<Posting> = Vec::with_capacity(raw.len());
                for r in raw {
                    let field = r.field as usize;
                    let len = f32::from(docs[r.doc as usize].lens[field]);
                    let tf = f32::from(r.tf);
                    let norm = 1.0 - B + B * len / avg_len[field];
                    let saturation = (tf * (K1 + 1.0) / (tf + K1 * norm)).min(1.0);
                    let weight = FIELD_WEIGHT[field] * saturation;
                    // Raw postings come in document order, so one document's fields are adjacent.
                    match out.last_mut() {
                        Some(last) if last.doc == r.doc => last.weight = last.weight.max(weight),
                        _ => out.push(Posting { doc: r.doc, weight }),
                    }
                }
                out.shrink_to_fit();
                out
            })
            .collect();

        let mut sorted_words: Vec<Box<str>> = surface.keys().cloned().collect();
        sorted_words.sort_unstable();
        let mut typo_words: Vec<Box<str>> = sorted_words.clone();
        typo_words.extend(lexicon.words().map(|w| Box::<str>::from(w.as_str())));
        typo_words.sort_unstable();
        typo_words.dedup();
        let mut deletes: HashMap<Box<str>, Vec<u32>> = HashMap::new();
        let mut by_shape: HashMap<(char, usize), Vec<u32>> = HashMap::new();
        for (id, word) in typo_words.iter().enumerate() {
            let len = word.chars().count();
            if len < TYPO1_CHARS - 1 || word.chars().any(|c| c.is_ascii_digit()) {
                continue;
            }
            deletes.entry(word.clone()).or_default().push(id as u32);
            for d in deletes_of(word) {
                deletes.entry(d.into()).or_default().push(id as u32);
            }
            if let Some(first) = word.chars().next() {
                by_shape.entry((first, len)).or_default().push(id as u32);
            }
        }

        let semantic = embedder.map(|(embedder, weight)| Semantic::build(embedder, weight, &products));

        Index {
            products,
            sellers,
            docs,
            surface,
            stem,
            postings,
            sorted_words,
            typo_words,
            deletes,
            by_shape,
            lexicon,
            semantic,
        }
    }

    /// Number of products indexed.
    pub fn len(&self) -> usize {
        self.products.len()
    }

    pub fn is_empty(&self) -> bool {
        self.products.is_empty()
    }

    fn visible(&self, doc: usize, q: &SearchQuery<'_>, category: Option<&str>) -> bool {
        let meta = &self.docs[doc];
        q.seller_id.is_none_or(|s| meta.seller_id == s) && category.is_none_or(|c| meta.category == c)
    }

    /// How many products a seller (or, with `None`, the whole catalog) has.
    pub fn count(&self, seller_id: Option<&str>) -> usize {
        match seller_id {
            None => self.docs.len(),
            Some(id) => self.docs.iter().filter(|d| d.seller_id == id).count(),
        }
    }

    /// Products under the query's filters, in catalog order.
    pub fn browse(&self, q: &SearchQuery<'_>) -> Vec<usize> {
        let category = q.category.map(str::to_lowercase);
        (0..self.docs.len()).filter(|&d| self.visible(d, q, category.as_deref())).collect()
    }

    /// Ranks the products under the query's filters. `matches` counts those scoring at least
    /// `floor`; `top` holds the best `k` of them, best first, equal scores in catalog order (so paging
    /// is deterministic); `near` the best few under the floor (partial matches, for suggestions).
    /// Browsing (no text) returns every product under the filters, in catalog order, scored 1.
    pub fn search(&self, q: &SearchQuery<'_>, floor: f32, k: usize) -> Ranked {
        let Some(text) = q.text else {
            let all = self.browse(q);
            let top = all.iter().take(k).map(|&doc| Hit { doc, score: 1.0 }).collect();
            return Ranked { matches: all.len(), top, near: Vec::new() };
        };
        let mut scored = self.score(text, q);
        let order = |a: &Hit, b: &Hit| b.score.total_cmp(&a.score).then(a.doc.cmp(&b.doc));
        let (mut above, mut below): (Vec<Hit>, Vec<Hit>) = scored.drain(..).partition(|h| h.score >= floor);
        let matches = above.len();
        let top_k = |hits: &mut Vec<Hit>, k: usize| {
            if k == 0 {
                hits.clear();
            } else if hits.len() > k {
                hits.select_nth_unstable_by(k - 1, order);
                hits.truncate(k);
            }
            hits.sort_unstable_by(order);
        };
        top_k(&mut above, k);
        top_k(&mut below, NEAR_MISSES);
        Ranked { matches, top: above, near: below }
    }

    /// The words of a query as scored. A phrase from the lexicon counts as one word; its parts still
    /// count where the catalog knows them (so "sleeping bag" also matches "sleeping" and "bag"
    /// literally). A word that reaches no product at all — not as written, stemmed, translated,
    /// corrected or completed — is tried as a compound of known words ("regenjacke" → "regen",
    /// "jacke") and replaced by its parts.
    fn query_words(&self, text: &str) -> Vec<QueryWord> {
        let mut words: Vec<QueryWord> = Vec::new();
        let push = |words: &mut Vec<QueryWord>,
                    word: String,
                    quality: f32,
                    compound: Option<&String>,
                    terms: Option<Vec<(u32, f32)>>| {
            if !self.lexicon.is_stopword(&word) && !words.iter().any(|w| w.word == word) {
                let mut terms = terms.unwrap_or_else(|| self.expand(&word));
                terms.iter_mut().for_each(|(_, q)| *q *= quality);
                words.push(QueryWord { word, compound: compound.cloned(), terms });
            }
        };
        for w in self.lexicon.phrases(tokenize(text)) {
            if w.contains(PHRASE_JOINER) {
                let parts: Vec<String> = w
                    .split(PHRASE_JOINER)
                    .filter(|p| self.surface.contains_key(*p))
                    .map(String::from)
                    .collect();
                push(&mut words, w, 1.0, None, None);
                parts.into_iter().for_each(|p| push(&mut words, p, 1.0, None, None));
            } else if !self.lexicon.is_stopword(&w) {
                let terms = self.expand(&w);
                match if terms.is_empty() { self.decompound(&w) } else { None } {
                    Some(parts) => parts
                        .into_iter()
                        .for_each(|p| push(&mut words, p, QUALITY_COMPOUND_PART, Some(&w), None)),
                    None => push(&mut words, w, 1.0, None, Some(terms)),
                }
            }
            if words.len() >= MAX_QUERY_WORDS {
                words.truncate(MAX_QUERY_WORDS);
                break;
            }
        }
        words
    }

    /// The parts of an unknown compound word (one whose expansion is empty) that splits into words of
    /// the catalog or the lexicon (see [`split_compound`]).
    fn decompound(&self, word: &str) -> Option<Vec<String>> {
        if self.surface.contains_key(word) || self.lexicon.contains(word) {
            return None;
        }
        split_compound(word, |part| {
            self.surface.contains_key(part) || self.stem.contains_key(part) || self.lexicon.contains(part)
        })
    }

    /// Every product under the filters with a score above zero, unordered.
    fn score(&self, text: &str, q: &SearchQuery<'_>) -> Vec<Hit> {
        let category = q.category.map(str::to_lowercase);
        let n = self.docs.len();
        let words = self.query_words(text);
        let mut total = vec![0f32; n];
        let mut weight_sum = 0f32;
        let mut best = vec![0f32; n];
        let mut touched: Vec<u32> = Vec::new();
        let mut any_touched: Vec<u32> = Vec::new();
        for word in &words {
            for &(term, quality) in &word.terms {
                for p in &self.postings[term as usize] {
                    let contribution = quality * p.weight;
                    let slot = &mut best[p.doc as usize];
                    if *slot == 0.0 {
                        touched.push(p.doc);
                    }
                    if contribution > *slot {
                        *slot = contribution;
                    }
                }
            }
            // IDF of the word over the documents it reached (any alternative, any field). A word that
            // reaches nothing still counts, as the rarest possible word: it is part of what was asked.
            let df = touched.len() as f32;
            let idf = (1.0 + (n as f32 - df + 0.5) / (df + 0.5)).ln().max(0.05);
            weight_sum += idf;
            for &doc in &touched {
                let slot = &mut best[doc as usize];
                if total[doc as usize] == 0.0 {
                    any_touched.push(doc);
                }
                total[doc as usize] += idf * *slot;
                *slot = 0.0;
            }
            touched.clear();
        }
        let lexical =
            |doc: usize| if weight_sum > 0.0 { (total[doc] / weight_sum).clamp(0.0, 1.0) } else { 0.0 };
        if let Some(semantic) = &self.semantic
            && let Some((query, query_scale)) = semantic.query(text)
        {
            return self.blend(semantic, &query, query_scale, q, category.as_deref(), lexical);
        }
        any_touched
            .into_iter()
            .map(|doc| doc as usize)
            .filter(|&doc| self.visible(doc, q, category.as_deref()))
            .map(|doc| Hit { doc, score: lexical(doc) })
            .collect()
    }

    /// Blends lexical scores with cosine similarity: `(1 − w)·lexical + w·semantic`, where the
    /// semantic part is the cosine rescaled so that weak similarity (under 0.3) counts as none. A
    /// product the embedder has no vector for keeps its lexical score. One pass over the compact
    /// vectors of every product under the filters, so a product no query word reaches can still come
    /// in on meaning alone (at most `w`).
    fn blend(
        &self,
        semantic: &Semantic,
        query: &[i8],
        query_scale: f32,
        q: &SearchQuery<'_>,
        category: Option<&str>,
        lexical: impl Fn(usize) -> f32,
    ) -> Vec<Hit> {
        let w = semantic.weight;
        let filtered = q.seller_id.is_some() || category.is_some();
        let mut hits = Vec::new();
        for doc in 0..self.docs.len() {
            if filtered && !self.visible(doc, q, category) {
                continue;
            }
            let lex = lexical(doc);
            let score = match semantic.similarity(doc, query, query_scale) {
                Some(sem) => (1.0 - w) * lex + w * sem,
                None => lex,
            };
            if score > 0.0 {
                hits.push(Hit { doc, score: score.clamp(0.0, 1.0) });
            }
        }
        hits
    }

    /// How a query is understood: each word with the terms it expands to and their quality, and how
    /// many products each term reaches. For operators tuning the lexicon (`kifly search explain`-style
    /// tooling) and for tests.
    pub fn explain(&self, text: &str) -> Vec<(String, Vec<Expansion>)> {
        let names: HashMap<u32, String> = self
            .surface
            .iter()
            .map(|(k, &v)| (v, k.to_string()))
            .chain(self.stem.iter().map(|(k, &v)| (v, format!("~{k}"))))
            .collect();
        self.query_words(text)
            .into_iter()
            .map(|w| {
                let terms = w
                    .terms
                    .iter()
                    .map(|&(id, q)| {
                        (names.get(&id).cloned().unwrap_or_default(), q, self.postings[id as usize].len())
                    })
                    .collect();
                let label = match &w.compound {
                    Some(compound) => format!("{} (of {compound})", w.word),
                    None => w.word,
                };
                (label, terms)
            })
            .collect()
    }

    /// The weighted alternatives of one query word: `(term id, quality)`, best quality per term.
    fn expand(&self, word: &str) -> Vec<(u32, f32)> {
        let mut out: HashMap<u32, f32> = HashMap::new();
        let known = self.surface.contains_key(word);
        self.expand_word(word, 1.0, true, &mut out);
        let in_lexicon = !self.lexicon.groups_of(word, &[]).is_empty();
        if !known && !in_lexicon {
            for corrected in self.typo_corrections(word) {
                self.expand_word(&corrected, QUALITY_TYPO, true, &mut out);
            }
            if word.chars().count() >= 3 {
                let start = self.sorted_words.partition_point(|w| w.as_ref() < word);
                for candidate in self.sorted_words[start..]
                    .iter()
                    .take_while(|w| w.starts_with(word))
                    .take(MAX_PREFIX_EXPANSIONS)
                {
                    if let Some(&id) = self.surface.get(candidate) {
                        merge(&mut out, id, QUALITY_PREFIX);
                    }
                }
            }
        }
        let mut out: Vec<(u32, f32)> = out.into_iter().collect();
        out.sort_unstable_by_key(|&(id, _)| id);
        out
    }

    /// The word, its stems and (with `synonyms`) its curated synonyms, each looked up as a surface
    /// word and as a stem.
    fn expand_word(&self, word: &str, quality: f32, synonyms: bool, out: &mut HashMap<u32, f32>) {
        let word_stems = stems(word);
        if let Some(&id) = self.surface.get(word) {
            merge(out, id, quality);
        }
        for key in std::iter::once(word).chain(word_stems.iter().map(String::as_str)) {
            if let Some(&id) = self.stem.get(key) {
                merge(out, id, quality * QUALITY_STEM);
            }
            if key != word
                && let Some(&id) = self.surface.get(key)
            {
                merge(out, id, quality * QUALITY_STEM);
            }
        }
        if synonyms {
            for group in self.lexicon.groups_of(word, &word_stems) {
                for member in &self.lexicon.groups[group as usize] {
                    if member != word {
                        self.expand_word(member, quality * QUALITY_SYNONYM, false, out);
                    }
                }
            }
        }
    }

    /// Known words within one edit (two for long words) of `word`, closest first.
    fn typo_corrections(&self, word: &str) -> Vec<String> {
        let len = word.chars().count();
        if len < TYPO1_CHARS || word.chars().any(|c| c.is_ascii_digit()) {
            return Vec::new();
        }
        let mut found: HashSet<u32> = HashSet::new();
        for key in std::iter::once(word.to_string()).chain(deletes_of(word)) {
            for &id in self.deletes.get(key.as_str()).map(Vec::as_slice).unwrap_or_default() {
                if strsim::osa_distance(word, &self.typo_words[id as usize]) <= 1 {
                    found.insert(id);
                }
            }
        }
        if found.is_empty()
            && len >= TYPO2_CHARS
            && let Some(first) = word.chars().next()
        {
            for l in len - 2..=len + 2 {
                for &id in self.by_shape.get(&(first, l)).map(Vec::as_slice).unwrap_or_default() {
                    if strsim::osa_distance(word, &self.typo_words[id as usize]) <= 2 {
                        found.insert(id);
                    }
                }
            }
        }
        let mut out: Vec<String> =
            found.into_iter().map(|id| self.typo_words[id as usize].to_string()).collect();
        out.sort_unstable();
        out
    }
}

fn merge(out: &mut HashMap<u32, f32>, id: u32, quality: f32) {
    let slot = out.entry(id).or_insert(0.0);
    if quality > *slot {
        *slot = quality;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantised_cosines_stay_within_a_hundredth_of_the_exact_ones() {
        // Deterministic pseudo-random unit vectors of an awkward dimension (padding is exercised).
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut unit = |dim: usize| {
            let v: Vec<f32> = (0..dim)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state % 2001) as f32 / 1000.0 - 1.0
                })
                .collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.into_iter().map(|x| x / norm).collect::<Vec<f32>>()
        };
        let stride = 100usize.div_ceil(LANES) * LANES;
        for _ in 0..50 {
            let (a, b) = (unit(100), unit(100));
            let (mut qa, mut qb) = (vec![0i8; stride], vec![0i8; stride]);
            let (sa, sb) = (quantize(&a, &mut qa), quantize(&b, &mut qb));
            let exact: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            let approx = dot_i8(&qa, &qb) as f32 * sa * sb;
            assert!((exact - approx).abs() < 0.01, "{exact} vs {approx}");
            let itself = dot_i8(&qa, &qa) as f32 * sa * sa;
            assert!((itself - 1.0).abs() < 0.01, "{itself}");
        }
        let mut zeros = vec![0i8; LANES];
        assert_eq!(quantize(&[0.0; 8], &mut zeros), 0.0);
        assert_eq!(quantize(&[f32::NAN, 1.0], &mut zeros), 0.0);
    }
}

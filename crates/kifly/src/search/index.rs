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
use super::text::{Lexicon, PHRASE_JOINER, stems, tokenize};

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

/// Semantic vectors of every product, when an embedder is configured.
struct Semantic {
    embedder: Arc<dyn Embedder>,
    weight: f32,
    dim: usize,
    vectors: Vec<f32>,
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

        let semantic = embedder.map(|(embedder, weight)| {
            let dim = embedder.dim();
            let mut vectors = Vec::with_capacity(products.len() * dim);
            for p in &products {
                let text = format!("{} {} {} {}", p.title, p.brand, p.category, p.description);
                let mut v = embedder.embed(&text);
                v.resize(dim, 0.0);
                vectors.extend(v);
            }
            Semantic { embedder, weight: weight.clamp(0.0, 1.0), dim, vectors }
        });

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

    /// Every product under the filters with a score above zero, unordered.
    fn score(&self, text: &str, q: &SearchQuery<'_>) -> Vec<Hit> {
        let category = q.category.map(str::to_lowercase);
        let n = self.docs.len();
        let mut words: Vec<String> = Vec::new();
        for w in self.lexicon.phrases(tokenize(text)) {
            // A phrase from the lexicon counts as one word; its parts still count where the catalog
            // knows them (so "sleeping bag" also matches "sleeping" and "bag" literally).
            let parts: Vec<String> = if w.contains(PHRASE_JOINER) {
                w.split(PHRASE_JOINER).filter(|p| self.surface.contains_key(*p)).map(String::from).collect()
            } else {
                Vec::new()
            };
            for w in std::iter::once(w).chain(parts) {
                if !self.lexicon.is_stopword(&w) && !words.contains(&w) {
                    words.push(w);
                }
            }
            if words.len() >= MAX_QUERY_WORDS {
                words.truncate(MAX_QUERY_WORDS);
                break;
            }
        }
        let mut total = vec![0f32; n];
        let mut weight_sum = 0f32;
        let mut best = vec![0f32; n];
        let mut touched: Vec<u32> = Vec::new();
        let mut any_touched: Vec<u32> = Vec::new();
        for word in &words {
            for (term, quality) in self.expand(word) {
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
        let mut hits: Vec<Hit> = Vec::new();
        if weight_sum > 0.0 {
            for &doc in &any_touched {
                let doc = doc as usize;
                if self.visible(doc, q, category.as_deref()) {
                    hits.push(Hit { doc, score: (total[doc] / weight_sum).clamp(0.0, 1.0) });
                }
            }
        }
        if let Some(semantic) = &self.semantic {
            hits = self.blend(semantic, text, q, category.as_deref(), hits);
        }
        hits
    }

    /// Blends lexical scores with cosine similarity: `(1 − w)·lexical + w·semantic`, where the
    /// semantic part is the cosine rescaled so that weak similarity (under 0.3) counts as none.
    fn blend(
        &self,
        semantic: &Semantic,
        text: &str,
        q: &SearchQuery<'_>,
        category: Option<&str>,
        hits: Vec<Hit>,
    ) -> Vec<Hit> {
        let mut query = semantic.embedder.embed(text);
        query.resize(semantic.dim, 0.0);
        let lexical: HashMap<usize, f32> = hits.into_iter().map(|h| (h.doc, h.score)).collect();
        let w = semantic.weight;
        (0..self.docs.len())
            .filter(|&doc| self.visible(doc, q, category))
            .filter_map(|doc| {
                let v = &semantic.vectors[doc * semantic.dim..(doc + 1) * semantic.dim];
                let cosine: f32 = v.iter().zip(&query).map(|(a, b)| a * b).sum();
                let sem = ((cosine - 0.3) / 0.7).clamp(0.0, 1.0);
                let score = (1.0 - w) * lexical.get(&doc).copied().unwrap_or(0.0) + w * sem;
                (score > 0.0).then_some(Hit { doc, score: score.clamp(0.0, 1.0) })
            })
            .collect()
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
        self.lexicon
            .phrases(tokenize(text))
            .into_iter()
            .filter(|w| !self.lexicon.is_stopword(w))
            .map(|w| {
                let terms = self
                    .expand(&w)
                    .into_iter()
                    .map(|(id, q)| {
                        (names.get(&id).cloned().unwrap_or_default(), q, self.postings[id as usize].len())
                    })
                    .collect();
                (w, terms)
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

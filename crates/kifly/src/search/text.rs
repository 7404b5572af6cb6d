//! Text analysis shared by indexing and querying: Unicode folding, tokenisation, multilingual
//! stemming, stopwords and the curated synonym table.
//!
//! Documents and queries go through exactly the same steps, so whatever the folding does (or fails to
//! do) it does on both sides.

use std::collections::HashMap;
use std::sync::OnceLock;

use rust_stemmers::{Algorithm, Stemmer};
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Tokens longer than this are cut (nothing in a product title is longer; it bounds the work a
/// hostile query can cause).
pub const MAX_TOKEN_CHARS: usize = 40;
/// Tokens shorter than this are not stemmed (stemmers mangle short words and abbreviations).
const MIN_STEM_CHARS: usize = 4;

/// The languages every token is stemmed in. Products mix languages inside one description, so rather
/// than guessing a language per field, each token is stemmed by all six stemmers and every distinct
/// stem is indexed; a query token matches a document token when they share any stem.
const LANGUAGES: [Algorithm; 6] = [
    Algorithm::English,
    Algorithm::Spanish,
    Algorithm::French,
    Algorithm::German,
    Algorithm::Portuguese,
    Algorithm::Italian,
];

fn stemmers() -> &'static [Stemmer] {
    static STEMMERS: OnceLock<Vec<Stemmer>> = OnceLock::new();
    STEMMERS.get_or_init(|| LANGUAGES.iter().map(|&lang| Stemmer::create(lang)).collect())
}

/// Lower-cases, decomposes (NFKD) and drops combining marks, so `Vétiver`, `VETIVER` and `vetiver`
/// are one word, `ﬁ` becomes `fi` and full-width digits become ASCII. A few letters that do not
/// decompose are spelled out (`ß` → `ss`, `æ` → `ae`, `ø` → `o`, …).
pub fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.nfkd() {
        if is_combining_mark(c) {
            continue;
        }
        for lower in c.to_lowercase() {
            match lower {
                'ß' => out.push_str("ss"),
                'æ' => out.push_str("ae"),
                'œ' => out.push_str("oe"),
                'ø' => out.push('o'),
                'ł' => out.push('l'),
                'đ' | 'ð' => out.push('d'),
                'þ' => out.push_str("th"),
                'ı' => out.push('i'),
                other => out.push(other),
            }
        }
    }
    out
}

/// Folds `text` and splits it into words: runs of letters and digits (any script). Single letters
/// are dropped (they are initials, elisions like `d'` or unit suffixes); single digits are kept.
pub fn tokenize(text: &str) -> Vec<String> {
    fold(text)
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .filter(|t| t.chars().count() > 1 || t.chars().all(|c| c.is_ascii_digit()))
        .map(|t| {
            if t.chars().count() > MAX_TOKEN_CHARS {
                t.chars().take(MAX_TOKEN_CHARS).collect()
            } else {
                t.to_string()
            }
        })
        .collect()
}

/// The distinct stems of a folded token in the six languages, the token itself excluded. Tokens with
/// digits and short tokens have none.
pub fn stems(token: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if token.chars().count() < MIN_STEM_CHARS || token.chars().any(|c| c.is_ascii_digit()) {
        return out;
    }
    for stemmer in stemmers() {
        let stem = stemmer.stem(token);
        if stem.len() >= 2 && stem != token && !out.iter().any(|s| s == stem.as_ref()) {
            out.push(stem.into_owned());
        }
    }
    out
}

/// Joins the words of a multi-word lexicon entry into one key.
pub const PHRASE_JOINER: &str = "_";
/// Stems shorter than this do not link a word to a synonym group.
const MIN_GROUP_STEM_CHARS: usize = 5;

fn group_stems(word: &str) -> Vec<String> {
    stems(word).into_iter().filter(|s| s.chars().count() >= MIN_GROUP_STEM_CHARS).collect()
}

/// The curated word lists (see `lexicon/`): stopwords and synonym groups.
pub struct Lexicon {
    stopwords: std::collections::HashSet<String>,
    /// Each group: folded single words that mean the same across the six languages.
    pub groups: Vec<Vec<String>>,
    /// Folded word or stem of any group member → the groups it belongs to.
    by_key: HashMap<String, Vec<u32>>,
}

impl Lexicon {
    /// The built-in lexicon, parsed once.
    pub fn builtin() -> &'static Lexicon {
        static LEXICON: OnceLock<Lexicon> = OnceLock::new();
        LEXICON.get_or_init(|| {
            Lexicon::parse(include_str!("lexicon/stopwords.txt"), include_str!("lexicon/synonyms.txt"))
        })
    }

    /// Parses the two data files: `#` starts a comment; stopwords are whitespace-separated; a synonym
    /// group is one line of comma-separated words (multi-word entries are ignored).
    pub fn parse(stopwords: &str, synonyms: &str) -> Lexicon {
        let strip = |line: &str| line.split('#').next().unwrap_or_default().to_string();
        let stopwords = stopwords.lines().flat_map(|l| tokenize(&strip(l))).collect();
        let mut groups: Vec<Vec<String>> = Vec::new();
        let mut by_key: HashMap<String, Vec<u32>> = HashMap::new();
        for line in synonyms.lines() {
            let mut group: Vec<String> = Vec::new();
            for entry in strip(line).split(',') {
                // A multi-word entry ("sac à dos") becomes one phrase key ("sac_dos"); see
                // [`Lexicon::phrases`].
                let word = tokenize(entry).join(PHRASE_JOINER);
                if !word.is_empty() && !group.contains(&word) {
                    group.push(word);
                }
            }
            if group.len() < 2 {
                continue;
            }
            let id = groups.len() as u32;
            for word in &group {
                for key in std::iter::once(word.clone()).chain(group_stems(word)) {
                    let ids = by_key.entry(key).or_default();
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
            }
            groups.push(group);
        }
        Lexicon { stopwords, groups, by_key }
    }

    pub fn is_stopword(&self, token: &str) -> bool {
        self.stopwords.contains(token)
    }

    /// Joins adjacent query words that form a multi-word lexicon entry ("saco de dormir" →
    /// `saco_dormir`), so the phrase is matched as one word. Single letters were already dropped by
    /// the tokenizer; stopwords inside a phrase are part of it.
    pub fn phrases(&self, words: Vec<String>) -> Vec<String> {
        let mut out = Vec::with_capacity(words.len());
        let mut i = 0;
        'outer: while i < words.len() {
            for len in [3, 2] {
                if i + len <= words.len() {
                    let joined = words[i..i + len].join(PHRASE_JOINER);
                    if self.by_key.contains_key(&joined) {
                        out.push(joined);
                        i += len;
                        continue 'outer;
                    }
                }
            }
            out.push(words[i].clone());
            i += 1;
        }
        out
    }

    /// Synonym groups a folded token belongs to: by the word itself, its singular (a trailing `s` or
    /// `es` dropped) or a long stem. Short stems are left out on purpose: fr "veste" and es "vestido"
    /// share the stem "vest" but not a meaning.
    pub fn groups_of(&self, token: &str, _token_stems: &[String]) -> Vec<u32> {
        let mut out: Vec<u32> = Vec::new();
        let mut keys: Vec<String> = vec![token.to_string()];
        for suffix in ["s", "es"] {
            if let Some(singular) = token.strip_suffix(suffix)
                && singular.chars().count() >= 3
            {
                keys.push(singular.to_string());
            }
        }
        keys.extend(group_stems(token));
        for key in keys.iter().map(String::as_str) {
            for &id in self.by_key.get(key).map(Vec::as_slice).unwrap_or_default() {
                if !out.contains(&id) {
                    out.push(id);
                }
            }
        }
        out
    }

    /// Whether a folded word (or a long stem of one) is in the synonym table; one look-up, no stemming.
    pub fn contains(&self, word: &str) -> bool {
        self.by_key.contains_key(word)
    }

    /// Every word in the synonym table (typo correction also targets these).
    pub fn words(&self) -> impl Iterator<Item = &String> {
        self.groups.iter().flatten()
    }
}

/// Compound parts shorter than this are not split off ("tee" in "teetasse" is the shortest kept).
pub const MIN_PART_CHARS: usize = 3;
/// A compound is split into at most this many parts.
const MAX_PARTS: usize = 3;
/// German linking elements (Fugenelemente) that may stand between two parts: Arbeit·s·hose,
/// Tasche·n·lampe, Kind·er·wagen, Hund·e·leine.
const LINKS: [&str; 6] = ["s", "es", "n", "en", "er", "e"];
/// Endings a word drops when it is the first part of a compound: Wander·stöcke (wandern),
/// Schul·tasche (Schule), Bad·tuch (baden).
const ELIDED: [&str; 3] = ["n", "en", "e"];
/// Plural endings the last part may carry (Kaffee·tassen → Tasse, Wein·gläser → Gläs…).
const PLURALS: [&str; 6] = ["n", "en", "e", "er", "s", "es"];

/// Splits a folded compound word ("regenjacke", "kaffeetassen") into words `known` accepts
/// ("regen", "jacke"; "kaffee", "tasse"): every part has at least [`MIN_PART_CHARS`] letters, a
/// linking element may stand between parts, a first part may have dropped its ending and the last
/// may be plural (each part is returned in the form `known` accepted). Among the possible splits the
/// one with the fewest parts wins, then the one with the longest parts (German puts the head last,
/// so "Wanderstöcke" is wander|stöcke, not wanders|töcke). `None` when no split exists.
pub fn split_compound(word: &str, known: impl Fn(&str) -> bool) -> Option<Vec<String>> {
    let chars: Vec<char> = word.chars().collect();
    if chars.len() < 2 * MIN_PART_CHARS || chars.iter().any(|c| !c.is_alphabetic()) {
        return None;
    }
    let mut search = Splitter { chars: &chars, known, forms: HashMap::new(), parts: Vec::new(), best: None };
    search.from(0);
    search.best.map(|(_, _, parts)| parts)
}

/// The state of [`split_compound`]'s search. `forms` remembers what `known` said about each part
/// (start, end, last?), so a long word costs at most a few thousand look-ups.
struct Splitter<'a, F> {
    chars: &'a [char],
    known: F,
    forms: HashMap<(usize, usize, bool), Option<String>>,
    parts: Vec<(String, usize)>,
    /// (parts, sum of squared part lengths, parts) of the best split so far.
    best: Option<(usize, usize, Vec<String>)>,
}

impl<F: Fn(&str) -> bool> Splitter<'_, F> {
    /// The form of `chars[start..end]` that `known` accepts, if any: as written, or (first parts)
    /// with a dropped ending restored, or (last part) without a plural ending.
    fn form(&mut self, start: usize, end: usize, last: bool) -> Option<String> {
        if let Some(form) = self.forms.get(&(start, end, last)) {
            return form.clone();
        }
        let part: String = self.chars[start..end].iter().collect();
        let known = &self.known;
        let form = if known(&part) {
            Some(part)
        } else if last {
            PLURALS
                .iter()
                .filter_map(|e| part.strip_suffix(e))
                .filter(|base| base.chars().count() >= MIN_PART_CHARS)
                .find(|base| known(base))
                .map(String::from)
        } else {
            ELIDED.iter().map(|e| format!("{part}{e}")).find(|full| known(full))
        };
        self.forms.insert((start, end, last), form.clone());
        form
    }

    fn from(&mut self, start: usize) {
        let n = self.chars.len();
        for end in (start + MIN_PART_CHARS..=n).rev() {
            let last = end == n;
            if (start == 0 && last)
                || (!last && (self.parts.len() + 2 > MAX_PARTS || n - end < MIN_PART_CHARS))
            {
                continue;
            }
            let Some(form) = self.form(start, end, last) else {
                continue;
            };
            self.parts.push((form, end - start));
            if last {
                let count = self.parts.len();
                let squares = self.parts.iter().map(|(_, len)| len * len).sum::<usize>();
                if self.best.as_ref().is_none_or(|(c, sq, _)| count < *c || (count == *c && squares > *sq)) {
                    self.best = Some((count, squares, self.parts.iter().map(|(p, _)| p.clone()).collect()));
                }
            } else {
                self.from(end);
                for link in LINKS {
                    let link: Vec<char> = link.chars().collect();
                    if self.chars[end..].starts_with(&link) && n - end - link.len() >= MIN_PART_CHARS {
                        self.from(end + link.len());
                    }
                }
            }
            self.parts.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compounds_split_into_known_words_with_linking_elements() {
        let words = [
            "regen", "jacke", "kaffee", "tasse", "wandern", "stocke", "arbeit", "hose", "tee", "schlaf",
            "sack", "hand", "tuch",
        ];
        let known = |w: &str| words.contains(&w);
        let split = |w: &str| split_compound(w, known);
        assert_eq!(split("regenjacke").unwrap(), ["regen", "jacke"]);
        assert_eq!(split("kaffeetassen").unwrap(), ["kaffee", "tasse"], "plural last part");
        assert_eq!(split("wanderstocke").unwrap(), ["wandern", "stocke"], "elided -n");
        assert_eq!(split("arbeitshose").unwrap(), ["arbeit", "hose"], "linking -s-");
        assert_eq!(split("teetasse").unwrap(), ["tee", "tasse"], "three-letter part");
        assert_eq!(split("regenjackentasche"), None, "tasche is unknown");
        assert_eq!(split("handtuchhose").unwrap(), ["hand", "tuch", "hose"], "three parts");
        assert_eq!(split("regen"), None, "a known word alone is not a compound");
        assert_eq!(split("jackeregenkaffeehose"), None, "at most three parts");
        assert_eq!(split("teetee").unwrap(), ["tee", "tee"]);
        assert_eq!(split("regen2jacke"), None, "digits are not compounds");
        assert_eq!(split("xyzjacke"), None, "every part must be known");
        assert_eq!(split(""), None);
        // The fewest parts win, then the longest: schlaf|sack, not schlaf|s|ack or a three-way split.
        assert_eq!(split("schlafsack").unwrap(), ["schlaf", "sack"]);
        let long = "ab".repeat(20);
        assert_eq!(split_compound(&long, |_| false), None);
        assert!(split_compound(&long, |w| w.len() >= 3).is_some(), "bounded work on a 40-letter word");
    }

    #[test]
    fn folding_removes_case_and_accents_in_every_latin_language() {
        assert_eq!(fold("Vétiver d'Automne"), "vetiver d'automne");
        assert_eq!(fold("FÜLLFEDERHALTER Großer"), "fullfederhalter grosser");
        assert_eq!(
            fold("Algodão orgânico, sábanas, Faïence, CAFÉ"),
            "algodao organico, sabanas, faience, cafe"
        );
        assert_eq!(fold("ﬁne ５０ml"), "fine 50ml");
        assert_eq!(fold("Œuvre Ærø"), "oeuvre aero");
    }

    #[test]
    fn tokenize_splits_on_anything_but_letters_and_digits() {
        assert_eq!(tokenize("Roll-Top Dry Bag (420D)"), ["roll", "top", "dry", "bag", "420d"]);
        assert_eq!(tokenize("d'Automne — 15°F / -9°C"), ["automne", "15", "9"]);
        assert_eq!(tokenize("🙂🙂 !!! \u{0}\u{7}"), Vec::<String>::new());
        assert_eq!(tokenize("日本 чашка"), ["日本", "чашка"]);
        let long = "a".repeat(5000);
        assert_eq!(tokenize(&long)[0].chars().count(), MAX_TOKEN_CHARS);
    }

    #[test]
    fn stems_bring_inflections_of_each_language_together() {
        let shared = |a: &str, b: &str| {
            let (sa, sb) = (stems(a), stems(b));
            let (sa, sb): (Vec<&str>, Vec<&str>) = (
                std::iter::once(a).chain(sa.iter().map(String::as_str)).collect(),
                std::iter::once(b).chain(sb.iter().map(String::as_str)).collect(),
            );
            sa.iter().any(|s| sb.contains(s))
        };
        assert!(shared("jackets", "jacket"), "en");
        assert!(shared("running", "runner") || shared("running", "run"), "en");
        assert!(shared("toallas", "toalla"), "es");
        assert!(shared("bougies", "bougie"), "fr");
        assert!(shared("sabanas", "sabana"), "es folded");
        assert!(shared("tassen", "tasse"), "de");
        assert!(shared("toalhas", "toalha"), "pt");
        assert!(shared("tazzine", "tazzina"), "it");
        assert!(stems("x50").is_empty() && stems("bag").is_empty());
    }

    #[test]
    fn the_builtin_lexicon_parses_and_groups_translations() {
        let lexicon = Lexicon::builtin();
        assert!(lexicon.groups.len() >= 30);
        assert!(lexicon.is_stopword("the") && lexicon.is_stopword("para") && lexicon.is_stopword("und"));
        let jacket = lexicon.groups_of("chaqueta", &stems("chaqueta"));
        assert!(!jacket.is_empty());
        assert!(lexicon.groups[jacket[0] as usize].iter().any(|w| w == "jacket"));
        assert!(!lexicon.groups_of("chaquetas", &stems("chaquetas")).is_empty(), "plural via stem");
        let veste = lexicon.groups_of("veste", &stems("veste"));
        assert!(
            veste.iter().all(|&g| !lexicon.groups[g as usize].iter().any(|w| w == "dress")),
            "no short-stem links"
        );
        let words = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(lexicon.phrases(words("sac dos rouge")), ["sac_dos", "rouge"]);
        assert_eq!(lexicon.phrases(words("saco de dormir")), ["saco_de_dormir"]);
    }
}

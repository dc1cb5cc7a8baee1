//! Exact and near-duplicate detection for canonical records.
//!
//! Every hash here is a fixed function of the record's text (SHA-256, FNV-1a with a fixed
//! finaliser), never `RandomState`/`DefaultHasher`, so keys computed by different workers,
//! processes or builds agree and shards can be deduplicated against each other.
//!
//! - [`exact_key`]: the same roles and contents in the same order, byte for byte.
//! - [`simhash`]: a 64-bit SimHash of normalised word unigrams and bigrams; similar texts get
//!   hashes a small Hamming distance apart.
//! - [`NearDupIndex`]: finds a stored SimHash within a Hamming distance in sublinear time.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use mcp_shared::domain::pipeline::Record;
use sha2::{Digest, Sha256};

/// Width of a SimHash in bits.
pub const SIMHASH_BITS: u32 = 64;

/// Chat templates add a few tokens per message (role markers, separators).
pub const TOKENS_PER_MESSAGE: usize = 4;

/// Lowercases, drops punctuation and symbols, and collapses whitespace to single spaces.
///
/// Punctuation is removed rather than turned into a space so that `don't` and `dont`, or
/// `e-mail` and `email`, normalise alike.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pending_space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            pending_space = !out.is_empty();
        } else if c.is_alphanumeric() {
            if pending_space {
                out.push(' ');
                pending_space = false;
            }
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// 128-bit key of a record's conversation: roles and contents exactly, in order.
///
/// Ids, source and metadata are left out so the same conversation ingested twice (or from two
/// files) collides. Every field is length-prefixed, so moving text between a role and a
/// content, or between two messages, cannot produce the same byte stream.
pub fn exact_key(r: &Record) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update((r.messages.len() as u64).to_le_bytes());
    for m in &r.messages {
        for field in [&m.role, &m.content] {
            h.update((field.len() as u64).to_le_bytes());
            h.update(field.as_bytes());
        }
    }
    let digest = h.finalize();
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

/// 64-bit SimHash over the normalised words of all messages: each unigram and each bigram
/// (within a message) votes once per occurrence, so frequent words weigh more.
///
/// Roles are left out: a conversation re-labelled `client`/`therapist` instead of
/// `user`/`assistant` is the same text. A record without words hashes to 0.
pub fn simhash(r: &Record) -> u64 {
    let mut votes = [0i64; SIMHASH_BITS as usize];
    let mut any = false;
    for m in &r.messages {
        let norm = normalize(&m.content);
        let mut prev: Option<&str> = None;
        for w in norm.split(' ').filter(|w| !w.is_empty()) {
            vote(&mut votes, feature_hash(&[w.as_bytes()]));
            if let Some(p) = prev {
                vote(
                    &mut votes,
                    feature_hash(&[p.as_bytes(), b" ", w.as_bytes()]),
                );
            }
            prev = Some(w);
            any = true;
        }
    }
    if !any {
        return 0;
    }
    votes.iter().enumerate().fold(
        0u64,
        |acc, (i, &v)| if v > 0 { acc | (1 << i) } else { acc },
    )
}

fn vote(votes: &mut [i64; SIMHASH_BITS as usize], h: u64) {
    for (i, v) in votes.iter_mut().enumerate() {
        if h >> i & 1 == 1 {
            *v += 1;
        } else {
            *v -= 1;
        }
    }
}

/// FNV-1a over the parts, then a MurmurHash3 finaliser: FNV alone mixes the high bits of short
/// inputs poorly, and SimHash needs every bit to be an independent coin flip per feature.
fn feature_hash(parts: &[&[u8]]) -> u64 {
    let mut h = Fnv1a::default();
    for p in parts {
        h.write(p);
    }
    fmix64(h.finish())
}

fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// Number of differing bits between two SimHashes.
pub fn hamming(a: u64, b: u64) -> u32 {
    (a ^ b).count_ones()
}

/// Largest Hamming distance at which two SimHashes count as near-duplicates for a similarity
/// threshold: `floor((1 - t) * 64)`, e.g. 0.95 → 3, 0.9 → 6, 1.0 → 0.
///
/// `t` is clamped to `[0.9, 1.0]` (NaN counts as 1.0): below 0.9 SimHash distances stop
/// separating paraphrases from unrelated text, and the index would need too many bands. A tiny
/// epsilon keeps thresholds whose product is an exact integer (e.g. 1 - 1/64) from flooring
/// one short through rounding.
pub fn max_distance(threshold: f64) -> u32 {
    let t = if threshold.is_nan() {
        1.0
    } else {
        threshold.clamp(0.9, 1.0)
    };
    ((1.0 - t) * f64::from(SIMHASH_BITS) + 1e-9).floor() as u32
}

/// Rough token count for budgeting and statistics, no tokenizer needed.
///
/// Per message: ASCII text averages about 4 bytes per token in BPE vocabularies, while other
/// scripts tokenise far denser (CJK is about one token per character), so a non-ASCII
/// character counts as 3 ASCII bytes. The result is floored at the message's word count
/// (short words and numbers are often a token each) and [`TOKENS_PER_MESSAGE`] is added for
/// the chat template's role markers.
pub fn estimate_tokens(r: &Record) -> usize {
    r.messages
        .iter()
        .map(|m| {
            let units: usize = m
                .content
                .chars()
                .map(|c| if c.is_ascii() { 1 } else { 3 })
                .sum();
            let words = m.content.split_whitespace().count();
            units.div_ceil(4).max(words) + TOKENS_PER_MESSAGE
        })
        .sum()
}

/// Finds stored SimHashes within a Hamming distance `d` of a query.
///
/// The 64 bits are cut into `d + 1` bands of near-equal width. Two hashes that differ in at
/// most `d` bits leave at least one band untouched (pigeonhole), so looking up the query's
/// value in each band's table yields every candidate; candidates are then checked with the
/// real distance, so there are no false positives. Lookups cost `d + 1` table probes plus the
/// candidates in those buckets.
#[derive(Debug, Clone)]
pub struct NearDupIndex {
    max_distance: u32,
    /// `(shift, mask)` per band.
    bands: Vec<(u32, u64)>,
    /// Per band: band value → indices into `hashes`.
    tables: Vec<FnvMap<u64, Vec<u32>>>,
    hashes: Vec<u64>,
    /// Identical hashes are stored once so buckets of exact duplicates do not grow.
    seen: FnvSet<u64>,
}

impl NearDupIndex {
    /// An empty index for distance `max_distance` (at most 63: with 64 single-bit bands every
    /// pair of hashes would be a candidate).
    pub fn new(max_distance: u32) -> Self {
        let d = max_distance.min(SIMHASH_BITS - 1);
        let n = d + 1;
        let (base, extra) = (SIMHASH_BITS / n, SIMHASH_BITS % n);
        let mut bands = Vec::with_capacity(n as usize);
        let mut shift = 0;
        for i in 0..n {
            let width = base + u32::from(i < extra);
            let mask = if width == 64 {
                u64::MAX
            } else {
                (1u64 << width) - 1
            };
            bands.push((shift, mask));
            shift += width;
        }
        Self {
            max_distance: d,
            tables: vec![FnvMap::default(); bands.len()],
            bands,
            hashes: Vec::new(),
            seen: FnvSet::default(),
        }
    }

    /// An index for a similarity threshold, see [`max_distance`].
    pub fn for_threshold(threshold: f64) -> Self {
        Self::new(max_distance(threshold))
    }

    pub fn max_distance(&self) -> u32 {
        self.max_distance
    }

    /// Number of distinct hashes stored.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    pub fn insert(&mut self, hash: u64) {
        if !self.seen.insert(hash) {
            return;
        }
        let idx = u32::try_from(self.hashes.len()).expect("NearDupIndex holds at most u32::MAX");
        self.hashes.push(hash);
        for (table, &(shift, mask)) in self.tables.iter_mut().zip(&self.bands) {
            table.entry(hash >> shift & mask).or_default().push(idx);
        }
    }

    /// Whether any stored hash is within the index's distance of `hash`.
    pub fn find_within(&self, hash: u64) -> bool {
        if self.seen.contains(&hash) {
            return true;
        }
        self.tables
            .iter()
            .zip(&self.bands)
            .filter_map(|(table, &(shift, mask))| table.get(&(hash >> shift & mask)))
            .flatten()
            .any(|&i| hamming(self.hashes[i as usize], hash) <= self.max_distance)
    }
}

type FnvMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv1a>>;
type FnvSet<K> = HashSet<K, BuildHasherDefault<Fnv1a>>;

/// 64-bit FNV-1a: fixed seed, so hashing is identical in every process.
struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv1a {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_support::record;

    /// Deterministic stream of well-mixed 64-bit values.
    struct SplitMix(u64);

    impl SplitMix {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            fmix64(self.0)
        }
    }

    /// Flips `k` distinct bits of `h`, chosen by `rng`.
    fn flip_bits(h: u64, k: u32, rng: &mut SplitMix) -> u64 {
        let mut mask = 0u64;
        while mask.count_ones() < k {
            mask |= 1 << (rng.next() % 64);
        }
        h ^ mask
    }

    const USER: &str = "I have been feeling anxious at work lately and I can not sleep well at \
                        night because my mind keeps racing about deadlines.";
    const THERAPIST: &str = "That sounds exhausting. What usually goes through your mind when \
                             you lie down and try to rest?";

    #[test]
    fn normalize_lowercases_strips_punctuation_and_collapses_space() {
        assert_eq!(
            normalize("  Hello,   WORLD!\n\tDon't  stop… "),
            "hello world dont stop"
        );
        assert_eq!(normalize("Ünïcode ÇAFÉ"), "ünïcode çafé");
        assert_eq!(normalize("?!"), "");
    }

    #[test]
    fn same_conversation_with_different_ids_has_the_same_exact_key() {
        let a = record("a", &[("user", USER), ("assistant", THERAPIST)]);
        let mut b = record("b", &[("user", USER), ("assistant", THERAPIST)]);
        b.metadata.insert("lang".into(), "en".into());
        assert_eq!(exact_key(&a), exact_key(&b));
    }

    #[test]
    fn a_changed_message_or_role_changes_the_exact_key() {
        let a = record("a", &[("user", USER), ("assistant", THERAPIST)]);
        let b = record("a", &[("user", USER), ("assistant", "That sounds hard.")]);
        let c = record("a", &[("client", USER), ("assistant", THERAPIST)]);
        // Exact means exact: case differs, key differs.
        let d = record(
            "a",
            &[("user", &USER.to_lowercase()), ("assistant", THERAPIST)],
        );
        let keys = [a, b, c, d].map(|r| exact_key(&r));
        for i in 0..keys.len() {
            for j in i + 1..keys.len() {
                assert_ne!(keys[i], keys[j], "{i} vs {j}");
            }
        }
    }

    #[test]
    fn exact_key_frames_fields_unambiguously() {
        let a = record("a", &[("user", "ab"), ("user", "c")]);
        let b = record("a", &[("user", "a"), ("user", "bc")]);
        let c = record("a", &[("user", "abc")]);
        assert_ne!(exact_key(&a), exact_key(&b));
        assert_ne!(exact_key(&a), exact_key(&c));
    }

    #[test]
    fn exact_key_and_simhash_are_pinned_across_builds() {
        // Pinned values: a change here means keys stored by older workers no longer match.
        let r = record("a", &[("user", "hello there"), ("assistant", "hi")]);
        let hex: String = exact_key(&r).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, EXPECTED_KEY);
        assert_eq!(simhash(&r), EXPECTED_SIMHASH);
    }
    const EXPECTED_KEY: &str = "afaf4bd0cf4a03c7a4e4817a0054637c";
    const EXPECTED_SIMHASH: u64 = 0xdb82_2842_04a2_1060;

    #[test]
    fn case_and_punctuation_changes_keep_the_simhash() {
        let a = record("a", &[("user", USER), ("assistant", THERAPIST)]);
        let b = record(
            "b",
            &[
                ("user", &USER.to_uppercase().replace(['.', ','], "!")),
                ("assistant", &THERAPIST.replace('?', "...")),
            ],
        );
        assert_eq!(hamming(simhash(&a), simhash(&b)), 0);
    }

    /// SimHash distance tracks the angle θ between the feature-count vectors: about
    /// `64 · θ / π` bits. This conversation has 40 words, so 78 unigram and bigram
    /// features; replacing a mid-sentence word swaps 3 of them (θ ≈ 0.28, ≈ 5.6 bits), the
    /// last word only 2 (θ ≈ 0.22, ≈ 4.6 bits), and repeated words lower both. Measured: the
    /// last-word edit below is 2 bits; replacing any single user word with "banana" gives 1–6
    /// bits, 4.3 on average. All stay within `max_distance(0.9) = 6`.
    #[test]
    fn a_one_word_edit_stays_within_the_09_distance() {
        let d = max_distance(0.9);
        let a = record("a", &[("user", USER), ("assistant", THERAPIST)]);
        let words = normalize(USER).split(' ').count() + normalize(THERAPIST).split(' ').count();
        assert_eq!(words, 40);

        let edited = USER.replace("deadlines", "meetings");
        let b = record("b", &[("user", &edited), ("assistant", THERAPIST)]);
        let dist = hamming(simhash(&a), simhash(&b));
        assert!(dist <= 4, "last-word edit: {dist} bits");

        let user_words: Vec<&str> = USER.split(' ').collect();
        let dists: Vec<u32> = (0..user_words.len())
            .map(|i| {
                let mut w = user_words.clone();
                w[i] = "banana";
                let r = record("c", &[("user", &w.join(" ")), ("assistant", THERAPIST)]);
                hamming(simhash(&a), simhash(&r))
            })
            .collect();
        assert!(dists.iter().all(|&x| x <= d), "{dists:?}");
        let mean = f64::from(dists.iter().sum::<u32>()) / dists.len() as f64;
        assert!(mean <= 5.0, "{dists:?}");
    }

    #[test]
    fn unrelated_conversations_are_far_apart() {
        let a = record("a", &[("user", USER), ("assistant", THERAPIST)]);
        let b = record(
            "b",
            &[
                (
                    "user",
                    "Can you recommend a recipe for a vegetarian lasagna with spinach?",
                ),
                (
                    "assistant",
                    "Layer ricotta, spinach and tomato sauce between sheets of pasta, top with \
                     mozzarella and bake for forty minutes.",
                ),
            ],
        );
        assert!(hamming(simhash(&a), simhash(&b)) > 10);
    }

    #[test]
    fn empty_records_hash_to_zero() {
        assert_eq!(simhash(&record("a", &[])), 0);
        assert_eq!(simhash(&record("a", &[("user", "!!! ...")])), 0);
    }

    #[test]
    fn max_distance_maps_thresholds_to_bits() {
        assert_eq!(max_distance(0.95), 3);
        assert_eq!(max_distance(0.9), 6);
        assert_eq!(max_distance(1.0), 0);
        assert_eq!(max_distance(1.0 - 1.0 / 64.0), 1);
        assert_eq!(max_distance(0.5), 6);
        assert_eq!(max_distance(f64::NAN), 0);
    }

    #[test]
    fn bands_cover_all_bits_once() {
        for d in [0, 3, 6, 10, 63, 100] {
            let idx = NearDupIndex::new(d);
            assert_eq!(idx.bands.len() as u32, idx.max_distance() + 1);
            let mut covered = 0u64;
            for &(shift, mask) in &idx.bands {
                let bits = mask << shift;
                assert_eq!(covered & bits, 0, "bands overlap for d={d}");
                covered |= bits;
            }
            assert_eq!(covered, u64::MAX, "bands miss bits for d={d}");
        }
    }

    #[test]
    fn index_finds_planted_neighbours_and_nothing_beyond_d() {
        for d in [max_distance(0.95), max_distance(0.9)] {
            let mut rng = SplitMix(0x5eed + u64::from(d));
            let mut idx = NearDupIndex::new(d);
            let stored: Vec<u64> = (0..10_000).map(|_| rng.next()).collect();
            for &h in &stored {
                idx.insert(h);
            }
            assert_eq!(idx.len(), stored.len());
            let brute = |q: u64| stored.iter().any(|&h| hamming(h, q) <= d);

            for i in (0..stored.len()).step_by(50) {
                let k = (i as u32) % (d + 1);
                let near = flip_bits(stored[i], k, &mut rng);
                assert!(
                    idx.find_within(near),
                    "d={d}: missed neighbour at distance {k}"
                );

                let far = flip_bits(stored[i], d + 1, &mut rng);
                assert_eq!(
                    idx.find_within(far),
                    brute(far),
                    "d={d}: distance {}",
                    d + 1
                );
            }
            for _ in 0..1_000 {
                let q = rng.next();
                assert_eq!(idx.find_within(q), brute(q), "d={d}: random query");
            }
        }
    }

    #[test]
    fn index_with_distance_zero_is_exact_match() {
        let mut idx = NearDupIndex::new(0);
        assert!(idx.is_empty());
        idx.insert(42);
        idx.insert(42);
        assert_eq!(idx.len(), 1);
        assert!(idx.find_within(42));
        assert!(!idx.find_within(43));
    }

    #[test]
    fn index_matches_simhash_near_duplicates() {
        let a = record("a", &[("user", USER), ("assistant", THERAPIST)]);
        let b = record(
            "b",
            &[("user", &USER.to_uppercase()), ("assistant", THERAPIST)],
        );
        let mut idx = NearDupIndex::for_threshold(0.95);
        idx.insert(simhash(&a));
        assert!(idx.find_within(simhash(&b)));
    }

    #[test]
    fn token_estimate_uses_chars_words_and_overhead() {
        let r = record("a", &[("user", "abcdefgh"), ("assistant", "a b c d e")]);
        // 8 bytes → 2 tokens; 9 bytes → 3, but 5 words floor it at 5.
        assert_eq!(estimate_tokens(&r), 2 + 5 + 2 * TOKENS_PER_MESSAGE);
        let cjk = record("a", &[("user", "你好世界")]);
        assert_eq!(estimate_tokens(&cjk), 3 + TOKENS_PER_MESSAGE);
        assert_eq!(estimate_tokens(&record("a", &[])), 0);
    }
}

//! Bias detection: per-category scores for generalising or exclusionary statements about
//! groups of people.
//!
//! Mentioning a group is not bias; saying something about *all* of it is. So a score rises only
//! when a group term (from [`GROUP_PLURALS`], [`GROUP_SINGULARS`], or a [`GROUP_ADJECTIVES`] +
//! [`PERSON_NOUNS`] pair such as "old people") is the subject of a generalising pattern in the
//! same sentence:
//!
//! - a copula with a generaliser or a stereotype attribute: "women are too emotional",
//!   "immigrants are always …", "muslims are dangerous";
//! - an incapacity: "old people can't learn technology";
//! - exclusion or alleged harm: "… should not be allowed to …", "… are taking our jobs";
//! - hostility aimed at the group: "I can't stand immigrants", "ban all muslims";
//! - "typical X", or a universal quantifier ("all X are …") which adds weight.
//!
//! Each such statement is a hit of [`GENERALISATION`] (0.8) or [`EXCLUSION`] (0.9); hits in a
//! category combine as `1 - Π(1 - s)`, so more hits score higher without reaching past 1. A
//! mention without a hit scores [`MENTION`] (0.1). Context dampens a hit: a partial quantifier
//! ("some", "many", "the") halves it, reported speech ("my boss says …") and questions halve
//! it, and talk *about* bias ("that's a stereotype", "unfair", "you felt judged") cuts it to a
//! fifth, so counselling dialogue that names a prejudice in order to challenge it stays low.
//! Restrictive phrases ("women who …", "my mother is a woman …", "those immigrants") and negated
//! claims ("not all men are …", "women aren't weak") do not count.
//!
//! # Cost
//!
//! One pass over the text: a tokenizer lowercases words and cuts sentences, every token is
//! looked up in one hash table for phrases of 1..=[`MAX_PHRASE_WORDS`] words, and each group
//! mention inspects at most [`WINDOW`] following symbols. Work is therefore linear in the input,
//! with no regex backtracking or quadratic windows. Input beyond [`MAX_SCAN_BYTES`] per record
//! is not scanned. A maximal adversarial record (64 KiB of back-to-back group mentions and
//! cues, so every word starts a lookup and a window) took about 1.2 ms in a release build and
//! 12 ms in an unoptimised test build on one x86-64 core; the budget is 50 ms.

use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

use mcp_shared::domain::pipeline::Record;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

/// At most this many bytes of a record (summed over its messages, or of one text) are
/// scanned; the rest is ignored. Conversations are far shorter; the bound keeps a pathological
/// record from stalling a shard.
pub const MAX_SCAN_BYTES: usize = 64 * 1024;

/// Strength of a generalising statement ("X are always …", "X can't …", "typical X").
pub const GENERALISATION: f64 = 0.8;
/// Strength of an exclusionary or hostile statement ("X should not be allowed …").
pub const EXCLUSION: f64 = 0.9;
/// Added when the statement is universally quantified ("all X", "every X") or pairs a
/// generaliser with a stereotype attribute ("too emotional").
pub const EMPHASIS: f64 = 0.1;
/// Statements with weak evidence: a generaliser without a copula or attribute
/// ("seniors always get …"), which is as often a habit as a stereotype.
pub const WEAK: f64 = 0.4;
/// Score of a category that is mentioned but never generalised about.
pub const MENTION: f64 = 0.1;

/// Dampening for partial quantifiers ("some women", "many immigrants", "the muslims").
pub const PARTIAL_FACTOR: f64 = 0.5;
/// Dampening for reported speech ("my dad says …") and questions.
pub const REPORTED_FACTOR: f64 = 0.5;
/// Dampening for sentences that talk about bias itself ("stereotype", "unfair", "judged").
pub const META_FACTOR: f64 = 0.2;

/// Longest lexicon phrase in words.
pub const MAX_PHRASE_WORDS: usize = 4;
/// How many symbols after a group mention may complete a pattern; a clause break or another
/// group ends the window earlier.
pub const WINDOW: usize = 8;

/// The bias categories scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BiasCategory {
    Gender,
    RaceEthnicity,
    Age,
    Religion,
    Disability,
    /// Sexual orientation and gender identity (LGBTQ+).
    SexualOrientation,
}

impl BiasCategory {
    pub const ALL: &'static [BiasCategory] = &[
        Self::Gender,
        Self::RaceEthnicity,
        Self::Age,
        Self::Religion,
        Self::Disability,
        Self::SexualOrientation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gender => "gender",
            Self::RaceEthnicity => "race_ethnicity",
            Self::Age => "age",
            Self::Religion => "religion",
            Self::Disability => "disability",
            Self::SexualOrientation => "sexual_orientation",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.as_str() == s)
    }

    fn index(self) -> usize {
        self as usize
    }

    fn bit(self) -> u8 {
        1 << self.index()
    }
}

impl fmt::Display for BiasCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A 0..1 score per [`BiasCategory`]. Serializes as a map from category name to score.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BiasScores([f64; 6]);

impl BiasScores {
    pub fn get(&self, cat: BiasCategory) -> f64 {
        self.0[cat.index()]
    }

    /// The highest-scoring category; ties go to the earlier one in [`BiasCategory::ALL`].
    pub fn max(&self) -> (BiasCategory, f64) {
        self.iter()
            .fold((BiasCategory::Gender, f64::MIN), |best, cur| {
                if cur.1 > best.1 { cur } else { best }
            })
    }

    /// Categories scoring strictly above `threshold`, in [`BiasCategory::ALL`] order.
    pub fn over(&self, threshold: f64) -> Vec<BiasCategory> {
        self.iter()
            .filter(|&(_, s)| s > threshold)
            .map(|(c, _)| c)
            .collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = (BiasCategory, f64)> + '_ {
        BiasCategory::ALL.iter().map(|&c| (c, self.get(c)))
    }
}

impl Serialize for BiasScores {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(BiasCategory::ALL.len()))?;
        for (cat, score) in self.iter() {
            map.serialize_entry(cat.as_str(), &score)?;
        }
        map.end()
    }
}

/// Scores one text (the first [`MAX_SCAN_BYTES`] of it).
pub fn score_text(text: &str) -> BiasScores {
    let mut scanner = Scanner::default();
    scanner.scan(prefix(text, MAX_SCAN_BYTES));
    scanner.finish()
}

/// Scores all messages of a record together, whatever their role: a biased statement is
/// training signal whether the user or the assistant makes it. The scan stops after
/// [`MAX_SCAN_BYTES`] in total.
pub fn score_record(r: &Record) -> BiasScores {
    let mut scanner = Scanner::default();
    let mut budget = MAX_SCAN_BYTES;
    for m in &r.messages {
        if budget == 0 {
            break;
        }
        let text = prefix(&m.content, budget);
        budget -= text.len();
        scanner.scan(text);
    }
    scanner.finish()
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char boundary.
fn prefix(s: &str, max: usize) -> &str {
    &s[..s.floor_char_boundary(max)]
}

// ---------------------------------------------------------------------------------------------
// Lexicon. Phrases are lowercase words separated by single spaces; apostrophes are kept
// inside words ("can't") and a trailing "'s" is stripped before lookup ("women's" → "women",
// marked possessive). Spelling variants without apostrophes are listed where common. The
// `lexicon_phrases_are_well_formed` test checks these rules.
// ---------------------------------------------------------------------------------------------

use BiasCategory::{Age, Disability, Gender, RaceEthnicity, Religion, SexualOrientation};

/// Plural nouns and fixed phrases that name a whole group; bare, they are read as generic
/// ("women are …"). Slurs are deliberately absent: they are caught by other filters and need
/// no generalising pattern to be harmful.
#[rustfmt::skip]
pub const GROUP_PLURALS: &[(BiasCategory, &[&str])] = &[
    (Gender, &[
        "women", "men", "girls", "boys", "females", "males", "ladies", "wives", "husbands",
        "mothers", "fathers", "moms", "mums", "dads", "housewives",
    ]),
    (RaceEthnicity, &[
        "immigrants", "migrants", "foreigners", "refugees", "illegals", "blacks", "whites",
        "asians", "hispanics", "latinos", "latinas", "arabs", "africans", "mexicans", "chinese",
        "indians", "natives", "gypsies", "roma", "people of color", "people of colour",
    ]),
    (Age, &[
        "elderly", "the elderly", "seniors", "senior citizens", "pensioners", "retirees", "boomers",
        "baby boomers", "millennials", "zoomers", "gen z", "teenagers", "teens", "old folks",
        "kids these days",
    ]),
    (Religion, &[
        "muslims", "moslems", "jews", "christians", "catholics", "protestants", "hindus",
        "buddhists", "sikhs", "mormons", "atheists", "evangelicals",
    ]),
    (Disability, &[
        "the disabled", "the handicapped", "the blind", "the deaf", "the mentally ill", "autistics",
        "schizophrenics", "people with disabilities", "people with a disability",
        "people with autism", "people with adhd", "people with mental illness",
        "people with mental illnesses", "people with down syndrome",
        "people with learning disabilities", "wheelchair users",
    ]),
    (SexualOrientation, &[
        "gays", "lesbians", "homosexuals", "bisexuals", "transgenders", "transsexuals", "queers",
        "lgbt", "lgbtq",
    ]),
];

/// Singular group nouns: generic only after "every", "any", "typical" and the like ("every
/// woman is …"); with an article or possessive they refer to one person. Kinship words and
/// colours are left out: "my mom" or "black" would otherwise count as mentions everywhere.
#[rustfmt::skip]
pub const GROUP_SINGULARS: &[(BiasCategory, &[&str])] = &[
    (Gender, &["woman", "man", "girl", "boy", "female", "male", "lady", "housewife"]),
    (RaceEthnicity, &[
        "immigrant", "migrant", "foreigner", "refugee", "asian", "hispanic", "latino", "latina",
        "arab", "african", "mexican", "indian",
    ]),
    (Age, &["pensioner", "retiree", "boomer", "millennial", "zoomer", "teenager"]),
    (Religion, &[
        "muslim", "jew", "christian", "catholic", "protestant", "hindu", "buddhist", "sikh",
        "mormon", "atheist", "evangelical",
    ]),
    (Disability, &["autistic", "schizophrenic", "wheelchair user"]),
    (SexualOrientation, &["gay", "lesbian", "homosexual", "bisexual", "transgender"]),
];

/// Adjectives that make a group out of a following [`PERSON_NOUNS`] entry: "old people",
/// "black women" (race and gender), "muslim neighbours". Up to two may stack ("old white
/// men"). Alone ("she is autistic") they are not a group mention.
#[rustfmt::skip]
pub const GROUP_ADJECTIVES: &[(BiasCategory, &[&str])] = &[
    (Gender, &["female", "male"]),
    (RaceEthnicity, &[
        "black", "white", "asian", "brown", "hispanic", "latino", "latina", "arab", "african",
        "mexican", "chinese", "indian", "foreign", "immigrant", "migrant", "native", "indigenous",
        "ethnic",
    ]),
    (Age, &["old", "older", "elderly", "aged", "young", "younger", "teenage"]),
    (Religion, &[
        "muslim", "jewish", "christian", "catholic", "protestant", "hindu", "buddhist", "sikh",
        "mormon", "atheist", "religious", "evangelical",
    ]),
    (Disability, &[
        "disabled", "handicapped", "autistic", "blind", "deaf", "mentally ill", "neurodivergent",
        "schizophrenic", "bipolar", "dyslexic",
    ]),
    (SexualOrientation, &[
        "gay", "lesbian", "bisexual", "trans", "transgender", "queer", "lgbt", "lgbtq",
        "homosexual", "nonbinary", "non binary",
    ]),
];

/// Nouns for people that a group adjective can qualify, `true` when plural. Gendered ones
/// ("men", "women", "girls") also carry their own category through [`GROUP_PLURALS`].
#[rustfmt::skip]
pub const PERSON_NOUNS: &[(&str, bool)] = &[
    ("people", true), ("persons", true), ("folks", true), ("folk", true), ("men", true),
    ("women", true), ("boys", true), ("girls", true), ("kids", true), ("children", true),
    ("guys", true), ("individuals", true), ("adults", true), ("students", true), ("workers", true),
    ("employees", true), ("drivers", true), ("parents", true), ("families", true),
    ("neighbors", true), ("neighbours", true), ("friends", true), ("colleagues", true),
    ("patients", true), ("couples", true), ("person", false), ("man", false), ("woman", false),
    ("boy", false), ("girl", false), ("kid", false), ("child", false), ("guy", false),
    ("individual", false), ("adult", false), ("student", false), ("worker", false),
    ("employee", false), ("driver", false), ("parent", false), ("family", false),
    ("neighbor", false), ("neighbour", false), ("friend", false), ("colleague", false),
    ("patient", false), ("couple", false),
];

/// Function words and cue phrases, by the role they play in a pattern.
#[rustfmt::skip]
const CUES: &[(Cue, &[&str])] = &[
    // Right before a group: how much of the group a statement covers.
    (Cue::Universal, &[
        "every", "any", "most", "no", "each", "the average", "your average", "all the",
    ]),
    (Cue::All, &["all"]),
    (Cue::Typical, &[
        "typical", "a typical", "the typical", "your typical", "typical of", "so typical of",
    ]),
    (Cue::Partial, &[
        "some", "many", "several", "certain", "few", "a few", "a lot of", "lots of", "plenty of",
        "the", "other",
    ]),
    (Cue::Specific, &[
        "my", "your", "his", "her", "our", "their", "its", "these", "those", "this", "a", "an",
        "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "both",
        "what", "the two",
    ]),
    (Cue::NotAll, &[
        "not all", "not every", "not most", "not any", "not all the", "not every single",
    ]),
    (Cue::That, &["that"]),
    // Right after a group: a restrictive clause narrows it to some members.
    (Cue::Rel, &["who", "whom", "whose", "which", "i know", "i met", "i work with"]),
    (Cue::CopulaPlural, &["are", "were", "seem", "seem to be"]),
    (Cue::CopulaSingular, &["is", "was", "seems", "seems to be"]),
    // After a modal ("will always be"), either number.
    (Cue::CopulaAny, &["be", "become", "been"]),
    (Cue::CopulaNegated, &[
        "aren't", "arent", "are not", "weren't", "were not", "isn't", "isnt", "is not", "wasn't",
        "was not",
    ]),
    (Cue::Not, &["not", "hardly", "rarely"]),
    // Generalisers that need no copula: "women always …", "old people tend to …".
    (Cue::Generaliser, &[
        "always", "never", "naturally", "inherently", "innately", "genetically", "biologically",
        "by nature", "by definition", "tend to", "tends to", "all tend to",
    ]),
    // Generalisers that need a copula: "women are too …", "immigrants are all …".
    (Cue::CopulaGeneraliser, &["too", "way too", "far too", "all the same", "all alike"]),
    (Cue::Incapacity, &[
        "can't", "cant", "cannot", "can not", "couldn't", "could not", "unable", "incapable",
        "don't know how", "dont know how", "do not know how", "will never", "never learn",
        "can never",
    ]),
    (Cue::Exclusion, &[
        "should not be allowed", "shouldn't be allowed", "shouldnt be allowed",
        "should never be allowed", "should not be", "shouldn't be", "shouldnt be",
        "should not have", "shouldn't have", "should not vote", "shouldn't vote", "should not work",
        "shouldn't work", "should be banned", "should be deported", "should be locked up",
        "should be kept out", "should be sent back", "should go back", "go back to",
        "should stay home", "should stay in", "don't belong", "dont belong", "do not belong",
        "belong in the kitchen", "have no place", "has no place", "are not welcome",
        "aren't welcome", "not welcome", "is not welcome", "isn't welcome", "don't deserve",
        "dont deserve", "do not deserve", "doesn't deserve", "does not deserve", "must not",
        "mustn't", "must be stopped", "need to be stopped", "should be ashamed", "are a disease",
    ]),
    (Cue::Harm, &[
        "steal our jobs", "take our jobs", "taking our jobs", "stealing our jobs", "took our jobs",
        "ruin", "ruins", "ruined", "ruining", "destroy", "destroys", "destroying", "taking over",
        "take over", "invade", "invading", "bring crime", "brings crime", "bring drugs",
        "spread disease", "spread diseases", "control the", "run the media", "are replacing us",
        "replacing us",
    ]),
    // Stereotype attributes: count after a copula or generaliser, or right after the group.
    (Cue::Attribute, &[
        "emotional", "hysterical", "irrational", "dramatic", "moody", "bossy", "shrill", "nagging",
        "weak", "weaker", "frail", "fragile", "feeble", "slow", "senile", "confused", "clueless",
        "useless", "worthless", "incompetent", "stupid", "dumb", "dumber", "smarter", "better",
        "worse", "superior", "inferior", "lazy", "dirty", "greedy", "cheap", "stingy", "sneaky",
        "untrustworthy", "dishonest", "liars", "thieves", "violent", "aggressive", "dangerous",
        "criminals", "criminal", "thugs", "terrorists", "extremists", "fanatics", "radicals",
        "backward", "primitive", "savage", "savages", "uncivilized", "unnatural", "abnormal",
        "perverted", "perverts", "deviants", "freaks", "burden", "a burden", "burdens", "a drain",
        "drain", "a threat", "threat", "parasites", "leeches", "bad", "bad at", "terrible at",
        "good at math", "bad drivers", "terrible drivers", "overreact", "overreacts", "complain",
        "whine", "whiners", "nag", "exaggerate", "faking it", "making it up", "entitled", "selfish",
        "arrogant", "rude", "loud", "angry", "manipulative", "materialistic", "promiscuous",
        "predators", "predatory", "childish", "immature", "irresponsible", "unreliable", "helpless",
        "attention seeking", "a phase", "just a phase", "confused about", "look the same",
        "look alike", "all look the same", "all look alike",
    ]),
    // Inclusion or structural statements that turn "X are always …" / "X can't …" benign.
    (Cue::Neutral, &[
        "welcome", "welcomed", "invited", "included", "entitled to", "equal", "deserve", "deserves",
        "deserving", "valued", "valid", "allowed to", "have rights", "have the right", "human",
        "humans", "people too", "afford", "access", "find", "reach", "enter", "get help",
        "protected", "respected", "treated fairly", "treated equally",
    ]),
    // Right before a group (after an optional quantifier): hostility towards it.
    (Cue::Hostile, &[
        "hate", "hates", "despise", "despises", "loathe", "detest", "can't stand", "cant stand",
        "cannot stand", "sick of", "fed up with", "disgusted by", "get rid of", "ban", "deport",
        "kick out", "keep out", "lock up", "too many", "never hire", "won't hire", "wont hire",
        "wouldn't hire", "don't hire", "don't trust", "dont trust", "never trust", "can't trust",
        "cannot trust",
    ]),
    // Anywhere in the sentence: talking about bias rather than expressing it.
    (Cue::Meta, &[
        "stereotype", "stereotypes", "stereotyping", "stereotyped", "stereotypical", "myth",
        "myths", "misconception", "prejudice", "prejudiced", "prejudices", "bias", "biased",
        "biases", "bigotry", "bigoted", "bigot", "discrimination", "discriminate", "discriminated",
        "discriminatory", "racist", "racism", "sexist", "sexism", "ageist", "ageism", "homophobic",
        "homophobia", "transphobic", "transphobia", "ableist", "ableism", "islamophobic",
        "islamophobia", "antisemitic", "antisemitism", "xenophobic", "xenophobia", "misogyny",
        "misogynistic", "misogynist", "judged", "judge", "judging", "judgement", "judgment",
        "not true", "isn't true", "untrue", "unfair", "unfairly", "hurtful", "harmful", "offensive",
        "cliche", "cliché", "assume", "assumes", "assumed", "assuming", "assumption", "assumptions",
        "generalization", "generalisation", "generalizing", "generalising", "generalize",
        "generalise",
    ]),
    (Cue::Report, &[
        "said", "says", "say", "told me", "told us", "told", "tells", "claims", "claimed", "claim",
        "insists", "insisted", "according to", "thinks", "believes", "heard", "keeps saying",
        "kept saying",
    ]),
    // Clause breaks: a pattern must be completed before one of these.
    (Cue::Breaker, &[
        "but", "because", "although", "though", "while", "whereas", "however", "unless", "if",
        "when", "whether",
    ]),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cue {
    Universal,
    /// Universal before a group, a copula generaliser after one ("are all …").
    All,
    Typical,
    Partial,
    Specific,
    NotAll,
    /// A determiner before a singular group, a complementiser before a plural one ("said
    /// that women …"), a relative pronoun after one.
    That,
    Rel,
    CopulaPlural,
    CopulaSingular,
    CopulaAny,
    CopulaNegated,
    Not,
    Generaliser,
    CopulaGeneraliser,
    Incapacity,
    Exclusion,
    Harm,
    Attribute,
    Neutral,
    Hostile,
    Meta,
    Report,
    Breaker,
}

/// Everything the lexicon knows about one phrase; a word can play several parts ("men" is a
/// group and a person noun, "all" a quantifier and a generaliser).
#[derive(Debug, Clone, Copy, Default)]
struct Lex {
    /// Categories of a group noun phrase, and whether it is plural.
    group: u8,
    group_plural: bool,
    /// Categories of a group adjective.
    adjective: u8,
    /// `Some(plural)` for a person noun.
    person: Option<bool>,
    cue: Option<Cue>,
}

/// Phrases longer than this cannot be in the lexicon, so longer keys skip the lookup.
const MAX_KEY_BYTES: usize = 48;

static LEXICON: LazyLock<HashMap<&'static str, Lex>> = LazyLock::new(|| {
    let mut map: HashMap<&'static str, Lex> = HashMap::new();
    for &(cat, words) in GROUP_PLURALS {
        for &w in words {
            let e = map.entry(w).or_default();
            e.group |= cat.bit();
            e.group_plural = true;
        }
    }
    for &(cat, words) in GROUP_SINGULARS {
        for &w in words {
            let e = map.entry(w).or_default();
            e.group |= cat.bit();
        }
    }
    for &(cat, words) in GROUP_ADJECTIVES {
        for &w in words {
            map.entry(w).or_default().adjective |= cat.bit();
        }
    }
    for &(w, plural) in PERSON_NOUNS {
        map.entry(w).or_default().person = Some(plural);
    }
    for &(cue, words) in CUES {
        for &w in words {
            // One role per phrase: `lexicon_phrases_are_well_formed` rejects duplicates.
            map.entry(w).or_default().cue = Some(cue);
        }
    }
    map
});

// ---------------------------------------------------------------------------------------------
// Scanner
// ---------------------------------------------------------------------------------------------

/// One phrase of a sentence after lexicon lookup.
#[derive(Debug, Clone, Copy)]
enum Sym {
    Group {
        cats: u8,
        plural: bool,
        possessive: bool,
    },
    Cue(Cue),
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Bare,
    Universal,
    Typical,
    Partial,
    Specific,
    Negated,
}

/// Accumulates hits over the sentences of one or more texts.
struct Scanner {
    /// Per category, the product of `1 - s` over hits.
    keep: [f64; 6],
    hits: [bool; 6],
    mentioned: u8,
    /// The current sentence: lowercased words separated by single spaces, their byte spans,
    /// and whether each was possessive ("women's").
    buf: String,
    spans: Vec<(usize, usize)>,
    possessive: Vec<bool>,
    word_start: Option<usize>,
    question: bool,
    /// Scratch space reused across sentences.
    matches: Vec<[Option<Lex>; MAX_PHRASE_WORDS]>,
    syms: Vec<Sym>,
}

impl Scanner {
    fn scan(&mut self, text: &str) {
        for c in text.chars() {
            if c.is_alphanumeric() {
                if self.word_start.is_none() {
                    if !self.buf.is_empty() {
                        self.buf.push(' ');
                    }
                    self.word_start = Some(self.buf.len());
                }
                self.buf.extend(c.to_lowercase());
            } else if matches!(c, '\'' | '’' | 'ʼ') && self.word_start.is_some() {
                self.buf.push('\'');
            } else {
                self.end_word();
                match c {
                    '?' => {
                        self.question = true;
                        self.end_sentence();
                    }
                    '.' | '!' | ';' | '\n' | '…' | '。' | '！' | '？' => self.end_sentence(),
                    _ => {}
                }
            }
        }
        self.end_word();
        self.end_sentence();
    }

    fn end_word(&mut self) {
        let Some(start) = self.word_start.take() else {
            return;
        };
        let mut possessive = false;
        if self.buf.ends_with("'s") {
            self.buf.truncate(self.buf.len() - 2);
            possessive = true;
        }
        while self.buf.ends_with('\'') {
            self.buf.pop();
            possessive = true;
        }
        self.spans.push((start, self.buf.len()));
        self.possessive.push(possessive);
    }

    fn end_sentence(&mut self) {
        if !self.spans.is_empty() {
            self.analyse_sentence();
        }
        self.buf.clear();
        self.spans.clear();
        self.possessive.clear();
        self.question = false;
    }

    /// Looks up every phrase of up to [`MAX_PHRASE_WORDS`] words starting at each word.
    fn lookup_phrases(&mut self) {
        let n = self.spans.len();
        self.matches.clear();
        for i in 0..n {
            let mut found = [None; MAX_PHRASE_WORDS];
            for (len, slot) in found.iter_mut().enumerate().take(n - i) {
                let (start, end) = (self.spans[i].0, self.spans[i + len].1);
                if end - start > MAX_KEY_BYTES {
                    break;
                }
                *slot = LEXICON.get(&self.buf[start..end]).copied();
            }
            self.matches.push(found);
        }
    }

    /// Longest phrase at word `i` satisfying `pred`, as `(words, lex)`.
    fn longest(&self, i: usize, pred: impl Fn(&Lex) -> bool) -> Option<(usize, Lex)> {
        self.matches[i]
            .iter()
            .enumerate()
            .rev()
            .find_map(|(len, m)| m.filter(|l| pred(l)).map(|l| (len + 1, l)))
    }

    /// A group mention starting at word `i`: a group phrase, or up to two group adjectives
    /// followed by a person noun. Returns `(words, categories, plural)`.
    fn group_at(&self, i: usize) -> Option<(usize, u8, bool)> {
        let n = self.spans.len();
        let phrase = self
            .longest(i, |l| l.group != 0)
            .filter(|&(len, _)| {
                // "the elderly man" is one man, not the elderly: the nominal reading only
                // holds when no person noun follows.
                let nominal = self.buf[self.spans[i].0..].starts_with("the ");
                !(nominal && self.person_at(i + len).is_some())
            })
            .map(|(len, l)| (len, l.group, l.group_plural));
        let mut j = i;
        let mut cats = 0;
        for _ in 0..2 {
            if j >= n {
                break;
            }
            let Some((len, l)) = self.longest(j, |l| l.adjective != 0) else {
                break;
            };
            cats |= l.adjective;
            j += len;
        }
        let compound = if cats != 0 {
            self.person_at(j)
                .map(|(plural, noun_cats)| (j + 1 - i, cats | noun_cats, plural))
        } else {
            None
        };
        match (phrase, compound) {
            (Some(p), Some(c)) => Some(if c.0 >= p.0 { c } else { p }),
            (p, c) => p.or(c),
        }
    }

    /// `(plural, group categories)` of a person noun at word `i`.
    fn person_at(&self, i: usize) -> Option<(bool, u8)> {
        let noun = self.matches.get(i)?[0]?;
        noun.person.map(|plural| (plural, noun.group))
    }

    fn analyse_sentence(&mut self) {
        self.lookup_phrases();
        let mut syms = std::mem::take(&mut self.syms);
        syms.clear();
        let (mut meta, mut report) = (false, false);
        let n = self.spans.len();
        let mut i = 0;
        while i < n {
            if let Some((len, cats, plural)) = self.group_at(i) {
                syms.push(Sym::Group {
                    cats,
                    plural,
                    possessive: self.possessive[i + len - 1],
                });
                i += len;
                continue;
            }
            match self
                .longest(i, |l| l.cue.is_some())
                .and_then(|(len, l)| Some((len, l.cue?)))
            {
                Some((len, cue)) => {
                    meta |= cue == Cue::Meta;
                    report |= cue == Cue::Report;
                    syms.push(Sym::Cue(cue));
                    i += len;
                }
                None => {
                    syms.push(Sym::Other);
                    i += 1;
                }
            }
        }

        let mut factor = 1.0;
        if meta {
            factor *= META_FACTOR;
        }
        if report {
            factor *= REPORTED_FACTOR;
        }
        if self.question {
            factor *= REPORTED_FACTOR;
        }
        for (g, sym) in syms.iter().enumerate() {
            let Sym::Group {
                cats,
                plural,
                possessive,
            } = *sym
            else {
                continue;
            };
            self.mentioned |= cats;
            if possessive {
                continue;
            }
            let s = statement_strength(&syms, g, plural) * factor;
            if s > 0.0 {
                for cat in BiasCategory::ALL {
                    if cats & cat.bit() != 0 {
                        let k = cat.index();
                        self.keep[k] *= 1.0 - s.min(1.0);
                        self.hits[k] = true;
                    }
                }
            }
        }
        self.syms = syms;
    }

    fn finish(self) -> BiasScores {
        let mut out = [0.0; 6];
        for cat in BiasCategory::ALL {
            let k = cat.index();
            let hit = if self.hits[k] {
                1.0 - self.keep[k]
            } else {
                0.0
            };
            let mention = if self.mentioned & cat.bit() != 0 {
                MENTION
            } else {
                0.0
            };
            out[k] = hit.max(mention).clamp(0.0, 1.0);
        }
        BiasScores(out)
    }
}

impl Default for Scanner {
    fn default() -> Self {
        Self {
            keep: [1.0; 6],
            hits: [false; 6],
            mentioned: 0,
            buf: String::new(),
            spans: Vec::new(),
            possessive: Vec::new(),
            word_start: None,
            question: false,
            matches: Vec::new(),
            syms: Vec::new(),
        }
    }
}

/// How strongly the sentence generalises about the group at `syms[g]`, before the sentence's
/// dampening factors; 0 when it does not.
fn statement_strength(syms: &[Sym], g: usize, plural: bool) -> f64 {
    let before = |k: usize| g.checked_sub(k).map(|i| syms[i]);
    let scope = match before(1) {
        Some(Sym::Cue(Cue::Universal | Cue::All)) => Scope::Universal,
        Some(Sym::Cue(Cue::Typical)) => Scope::Typical,
        Some(Sym::Cue(Cue::Partial)) => Scope::Partial,
        Some(Sym::Cue(Cue::Specific)) => Scope::Specific,
        Some(Sym::Cue(Cue::That)) if !plural => Scope::Specific,
        Some(Sym::Cue(Cue::NotAll)) => Scope::Negated,
        _ => Scope::Bare,
    };
    let hostile = match scope {
        Scope::Bare => matches!(before(1), Some(Sym::Cue(Cue::Hostile))),
        Scope::Universal | Scope::Partial => matches!(before(2), Some(Sym::Cue(Cue::Hostile))),
        _ => false,
    };
    // A singular ("woman", "the elderly man") is one person unless quantified ("every woman").
    let generic = match scope {
        Scope::Specific | Scope::Negated => false,
        Scope::Universal | Scope::Typical => true,
        Scope::Bare | Scope::Partial => plural,
    };
    if !generic {
        return 0.0;
    }

    let mut s = predicate_strength(&syms[g + 1..], plural);
    if hostile {
        s = s.max(EXCLUSION);
    }
    match scope {
        Scope::Typical => s = s.max(GENERALISATION),
        Scope::Universal if s > 0.0 => s += EMPHASIS,
        Scope::Partial => s *= PARTIAL_FACTOR,
        _ => {}
    }
    s.min(1.0)
}

/// Strength of what the symbols after a group say about it.
fn predicate_strength(after: &[Sym], plural: bool) -> f64 {
    // `Some(true)`: an agreeing, affirmative copula ("women are"); `Some(false)`: a negated or
    // disagreeing one, which blocks copula patterns.
    let mut copula: Option<bool> = None;
    let (mut generaliser, mut bare_generaliser, mut attribute) = (false, false, false);
    let (mut incapacity, mut exclusion, mut neutral) = (false, false, false);
    for (k, sym) in after.iter().take(WINDOW).enumerate() {
        let cue = match sym {
            Sym::Cue(c) => *c,
            Sym::Group { .. } => break,
            Sym::Other => continue,
        };
        match cue {
            Cue::Rel | Cue::That if k == 0 => return 0.0,
            Cue::Breaker => break,
            Cue::CopulaPlural | Cue::CopulaSingular if copula.is_none() => {
                copula = Some((cue == Cue::CopulaPlural) == plural);
            }
            Cue::CopulaAny if copula.is_none() => copula = Some(true),
            Cue::CopulaNegated if copula.is_none() => copula = Some(false),
            Cue::Not => copula = Some(false),
            Cue::Generaliser => match copula {
                None => bare_generaliser = true,
                Some(true) => generaliser = true,
                Some(false) => {}
            },
            Cue::CopulaGeneraliser | Cue::All if copula == Some(true) => generaliser = true,
            Cue::Attribute => {
                attribute |= copula == Some(true)
                    || (copula.is_none() && (k == 0 || bare_generaliser || incapacity));
            }
            Cue::Incapacity => incapacity = true,
            Cue::Exclusion | Cue::Harm => exclusion = true,
            Cue::Neutral => neutral = true,
            _ => {}
        }
    }
    if exclusion {
        EXCLUSION
    } else if neutral {
        0.0
    } else if incapacity || generaliser {
        GENERALISATION + if attribute { EMPHASIS } else { 0.0 }
    } else if attribute {
        GENERALISATION
    } else if bare_generaliser {
        WEAK
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_support::record;

    fn high(text: &str, cat: BiasCategory) {
        let s = score_text(text);
        assert!(
            s.get(cat) >= GENERALISATION,
            "{cat} should be high for {text:?}: {s:?}"
        );
        for other in BiasCategory::ALL.iter().filter(|c| **c != cat) {
            assert!(
                s.get(*other) <= MENTION,
                "{other} should stay low for {text:?}: {s:?}"
            );
        }
    }

    fn low(text: &str) {
        let s = score_text(text);
        let (cat, max) = s.max();
        assert!(max <= 0.2, "{cat} should be low for {text:?}: {s:?}");
    }

    fn mentioned(text: &str, cat: BiasCategory) {
        low(text);
        assert_eq!(score_text(text).get(cat), MENTION, "{text:?}");
    }

    #[test]
    fn gender() {
        high("Women are too emotional to lead.", Gender);
        high("Every woman is naturally worse at math.", Gender);
        high("Men always overreact when they are sick", Gender);
        high("That's so typical of women.", Gender);
        mentioned("My mother is a woman who loves gardening.", Gender);
        mentioned("The women in my book club meet every Tuesday.", Gender);
    }

    #[test]
    fn race_ethnicity() {
        high(
            "Immigrants are lazy and always take our jobs.",
            RaceEthnicity,
        );
        high("All asians look the same to me", RaceEthnicity);
        high("I can't stand immigrants.", RaceEthnicity);
        mentioned(
            "My neighbours are immigrants from Syria who opened a bakery.",
            RaceEthnicity,
        );
        mentioned(
            "She met two Mexican students at the conference.",
            RaceEthnicity,
        );
    }

    #[test]
    fn age() {
        high("Old people can't learn technology.", Age);
        high("Boomers are so entitled.", Age);
        high("Typical boomer!", Age);
        mentioned(
            "I volunteer at a home where elderly people share stories from their youth.",
            Age,
        );
        low("The elderly man next door can't walk far since his surgery.");
    }

    #[test]
    fn religion() {
        high(
            "Muslims are dangerous and should not be allowed in this country.",
            Religion,
        );
        high("Jews are greedy.", Religion);
        high("Christians are all the same", Religion);
        mentioned("I went to the mosque with my Muslim friends.", Religion);
        low("I went to the mosque with friends.");
    }

    #[test]
    fn disability() {
        high("Disabled people are a burden on society.", Disability);
        high("Autistic people can't understand emotions.", Disability);
        high("People with ADHD are just lazy.", Disability);
        mentioned(
            "My brother is autistic and works as a software engineer.",
            Disability,
        );
        low("The blind spot on my mirror is annoying.");
    }

    #[test]
    fn sexual_orientation() {
        high(
            "Gays are unnatural and shouldn't be allowed to adopt.",
            SexualOrientation,
        );
        high("Trans people are just confused.", SexualOrientation);
        high("Bisexuals are always lying about it", SexualOrientation);
        mentioned(
            "My sister and her wife are both lesbians and they just adopted a puppy.",
            SexualOrientation,
        );
        mentioned(
            "I marched with my gay friends at the pride parade.",
            SexualOrientation,
        );
    }

    #[test]
    fn compound_groups_count_for_each_category() {
        let s = score_text("Old white men are always so arrogant.");
        assert!(s.get(Age) >= GENERALISATION);
        assert!(s.get(RaceEthnicity) >= GENERALISATION);
        assert!(s.get(Gender) >= GENERALISATION);
        assert_eq!(s.get(Religion), 0.0);
    }

    #[test]
    fn more_hits_score_higher() {
        let one = score_text("Women are too emotional to lead.").get(Gender);
        let two =
            score_text("Women are too emotional to lead. Women can't drive either.").get(Gender);
        assert!((0.8..1.0).contains(&one), "{one}");
        assert!(two > one, "{one} {two}");
        assert!(two <= 1.0);
        let all = score_text("All women are too emotional to lead.").get(Gender);
        assert!(all > one);
    }

    #[test]
    fn counselling_and_counter_statements_stay_low() {
        low("It sounds like you felt judged because of your age.");
        low("You felt judged because you are a woman, and that hurt.");
        low("When your coworker said old people can't learn technology, that was unfair.");
        low("The idea that women are too emotional to lead is a harmful stereotype.");
        low("Not all men are like that.");
        low("Women aren't too emotional to lead.");
        low("Immigrants are always welcome at our community centre.");
        low("Many elderly people can't afford their medication.");
        low("Women who are always late annoy me.");
        let q = score_text("Do you think women are too emotional to lead?").get(Gender);
        assert!(q < 0.7, "questions are dampened: {q}");
        let reported = score_text("My boss says women are too emotional to lead.").get(Gender);
        assert!(reported < 0.7, "reported speech is dampened: {reported}");
    }

    #[test]
    fn neutral_text_scores_zero() {
        let s = score_text("I have been sleeping badly and my therapist suggested a routine.");
        assert_eq!(s, BiasScores::default());
        assert_eq!(score_text(""), BiasScores::default());
    }

    #[test]
    fn record_scores_cover_all_messages_and_keep_sentences_apart() {
        let r = record(
            "r1",
            &[
                ("user", "I feel stuck at work"),
                ("assistant", "Tell me more."),
                ("user", "Honestly, old people can't learn technology"),
            ],
        );
        assert!(score_record(&r).get(Age) >= GENERALISATION);
        // A pattern does not reach across a message boundary.
        let split = record(
            "r1",
            &[
                ("user", "I like old people"),
                ("user", "can't sleep tonight"),
            ],
        );
        assert!(score_record(&split).get(Age) <= MENTION);
    }

    #[test]
    fn scores_helpers_and_serialization() {
        let s = score_text("Muslims are dangerous. I met some women at the park.");
        assert_eq!(s.max().0, Religion);
        assert_eq!(s.over(0.7), vec![Religion]);
        assert_eq!(s.over(0.05), vec![Gender, Religion]);
        let v = serde_json::to_value(s).expect("serialize");
        let map = v.as_object().expect("a map");
        let keys: Vec<&str> = map.keys().map(String::as_str).collect();
        let mut names: Vec<&str> = BiasCategory::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        let mut keys_sorted = keys.clone();
        keys_sorted.sort_unstable();
        assert_eq!(keys_sorted, names);
        assert_eq!(map["religion"], s.get(Religion));
        assert_eq!(BiasScores::default().max(), (Gender, 0.0));
        for c in BiasCategory::ALL {
            assert_eq!(BiasCategory::parse(c.as_str()), Some(*c));
            assert_eq!(serde_json::to_value(c).expect("name"), c.as_str());
        }
    }

    #[test]
    fn possessives_and_curly_apostrophes_are_understood() {
        mentioned("Women's football is growing fast.", Gender);
        high("Old people can’t learn technology.", Age);
    }

    #[test]
    fn lexicon_phrases_are_well_formed() {
        let all = GROUP_PLURALS
            .iter()
            .chain(GROUP_SINGULARS)
            .chain(GROUP_ADJECTIVES)
            .flat_map(|(_, w)| w.iter())
            .chain(PERSON_NOUNS.iter().map(|(w, _)| w))
            .chain(CUES.iter().flat_map(|(_, w)| w.iter()));
        let mut cues = std::collections::HashSet::new();
        for phrase in CUES.iter().flat_map(|(_, w)| w.iter()) {
            assert!(cues.insert(phrase), "{phrase:?} has two cue roles");
        }
        for phrase in all {
            let words: Vec<&str> = phrase.split(' ').collect();
            assert!(words.len() <= MAX_PHRASE_WORDS, "{phrase:?} is too long");
            assert!(phrase.len() <= MAX_KEY_BYTES, "{phrase:?} is too long");
            assert_eq!(
                phrase.to_lowercase(),
                *phrase,
                "{phrase:?} must be lowercase"
            );
            for w in words {
                let ok = w.chars().next().is_some_and(char::is_alphanumeric)
                    && w.chars().all(|c| c.is_alphanumeric() || c == '\'')
                    && !w.ends_with("'s");
                assert!(ok, "{phrase:?}: {w:?} would not survive tokenization");
            }
        }
    }

    /// The largest record the scanner reads, built to maximise its work: every word is a group
    /// term or a cue, every sentence is as long as possible, and several categories interleave.
    #[test]
    fn worst_case_record_is_scored_correctly() {
        let unit = "all old white women are too emotional and can't learn and \
                    should not be allowed ";
        let text: String = unit.repeat(MAX_SCAN_BYTES / unit.len() + 1);
        assert!(text.len() > MAX_SCAN_BYTES);
        let r = record("r1", &[("user", &text)]);
        let s = score_record(&r);
        for cat in [Gender, RaceEthnicity, Age] {
            assert_eq!(s.get(cat), 1.0, "{cat}: {s:?}");
        }
        for cat in [Religion, Disability, SexualOrientation] {
            assert_eq!(s.get(cat), 0.0, "{cat}: {s:?}");
        }

        // A maximal neutral record: long, full of mentions, no generalisation.
        let unit = "my muslim friends and the women in my group went to the mosque. ";
        let text = unit.repeat(MAX_SCAN_BYTES / unit.len() + 1);
        let s = score_record(&record("r1", &[("user", &text), ("assistant", &text)]));
        assert_eq!(s.get(Religion), MENTION);
        assert_eq!(s.get(Gender), MENTION);
        assert_eq!(s.max().1, MENTION);

        // One enormous word, and multi-byte text cut at an odd byte, must not panic.
        let _ = score_text(&"a".repeat(MAX_SCAN_BYTES * 2));
        let _ = score_text(&"é".repeat(MAX_SCAN_BYTES));
    }

    #[test]
    fn text_past_the_scan_bound_is_ignored() {
        let filler = "I had a calm week and slept well. ".repeat(MAX_SCAN_BYTES / 30);
        assert!(filler.len() > MAX_SCAN_BYTES);
        let r = record(
            "r1",
            &[
                ("user", &filler),
                ("user", "Old people can't learn technology."),
            ],
        );
        assert_eq!(score_record(&r).get(Age), 0.0);
        let early = record(
            "r1",
            &[
                ("user", "Old people can't learn technology."),
                ("user", &filler),
            ],
        );
        assert!(score_record(&early).get(Age) >= GENERALISATION);
    }
}

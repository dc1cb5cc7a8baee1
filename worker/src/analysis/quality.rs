//! Conversation quality as a 0..1 score from named features, each 0..1 with 1 = good.
//!
//! The features are cheap heuristics for defects that make a record a poor training example:
//! too few turns, one side doing all the talking, repetitive or templated text, a cut-off
//! ending. Keeping them separate (and stored next to the score) lets a reviewer see why a
//! record was dropped and lets the weights be retuned without re-deriving anything.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use mcp_shared::domain::pipeline::Record;
use regex::Regex;
use serde::{Deserialize, Serialize};

use super::dedup::normalize;

/// Number of bins [`histogram_bin`] spreads scores over.
pub const HISTOGRAM_BINS: usize = 10;

/// Weights of the score's weighted mean, in [`QualityFeatures`] field order; they sum to 1.
/// Repetition and placeholders weigh most: they mark generated or templated text, which
/// teaches a model the defect itself.
pub const WEIGHTS: QualityFeatures = QualityFeatures {
    turn_count: 0.15,
    length_balance: 0.15,
    lexical_diversity: 0.15,
    truncation: 0.15,
    repetition: 0.20,
    placeholders: 0.20,
};

/// A record's quality: the weighted mean of its features (see [`WEIGHTS`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    /// 0..1, higher is better.
    pub score: f64,
    pub features: QualityFeatures,
}

/// The features behind a [`Quality`] score, each 0..1 with 1 = good.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QualityFeatures {
    /// Non-system messages with content: 1 → 0.2, 2 → 0.6, 3 → 0.8, 4 or more → 1. A lone
    /// message is not a conversation; a few exchanges are.
    pub turn_count: f64,
    /// How evenly characters split between the user side (`user`, `client`) and the assistant
    /// side (`assistant`, `therapist`): 1 while either side has at least
    /// [`BALANCE_PLATEAU`] of the text, falling linearly to 0 when one side is silent.
    pub length_balance: f64,
    /// Moving-average type-token ratio over windows of [`MATTR_WINDOW`] words (plain TTR for
    /// shorter texts), so long records are not penalised merely for being long; mapped
    /// linearly from [`TTR_POOR`] (0) to [`TTR_GOOD`] (1).
    pub lexical_diversity: f64,
    /// Whether the last message ends like a finished sentence: terminal punctuation → 1,
    /// no punctuation (common in chat) → 0.6, an ellipsis → 0.2, a dangling comma, dash or
    /// function word ("and", "the", "to" …) → 0.1.
    pub truncation: f64,
    /// The worse of two signals: repeated word 4-grams (share of 4-grams seen earlier in the
    /// record; up to [`NGRAM_REPEAT_OK`] is normal speech, [`NGRAM_REPEAT_BAD`] or more → 0),
    /// and repeated messages of 3+ words (each duplicate costs twice its share of messages).
    pub repetition: f64,
    /// Leftover template placeholders (`{name}`, `<NAME>`, `[INSERT …]`, `lorem ipsum`,
    /// `TODO`, `xxx` …): `1 / (1 + 2n)` for `n` found. The redaction tags validation inserts
    /// (`[EMAIL]`, `[PHONE]`, …, see [`REDACTION_TAGS`]) are legitimate and not counted.
    pub placeholders: f64,
}

/// Share of the text either side must have for a full `length_balance`.
pub const BALANCE_PLATEAU: f64 = 0.2;
/// Window of the moving-average type-token ratio.
pub const MATTR_WINDOW: usize = 50;
/// MATTR at or below which `lexical_diversity` is 0 (a handful of words on repeat).
pub const TTR_POOR: f64 = 0.3;
/// MATTR at or above which `lexical_diversity` is 1; natural dialogue sits around 0.65–0.8.
pub const TTR_GOOD: f64 = 0.6;
/// Share of repeated 4-grams ordinary speech reaches ("i don't know what", "how does that
/// make").
pub const NGRAM_REPEAT_OK: f64 = 0.1;
/// Share of repeated 4-grams at which `repetition` is 0.
pub const NGRAM_REPEAT_BAD: f64 = 0.5;

/// Placeholders the validation stage's PII redaction writes into text; they carry meaning
/// ("an email was here") and must not count as leftover template slots.
pub const REDACTION_TAGS: &[&str] = &[
    "EMAIL",
    "PHONE",
    "SSN",
    "CREDIT_CARD",
    "IP_ADDRESS",
    "ADDRESS",
    "DOB",
];

const USER_ROLES: &[&str] = &["user", "client"];
const ASSISTANT_ROLES: &[&str] = &["assistant", "therapist"];

/// Words that cannot end a finished sentence: articles, conjunctions, possessives, auxiliaries
/// and the prepositions text is most often cut after.
const DANGLING_WORDS: &[&str] = &[
    "a", "an", "the", "and", "or", "but", "nor", "because", "although", "though", "whereas",
    "unless", "if", "than", "my", "your", "our", "their", "his", "its", "whose", "is", "are",
    "was", "were", "am", "i", "we", "they", "to", "of", "with", "from", "very",
];

/// Candidate placeholders; bracketed and angled text is classified further in
/// [`is_placeholder`] because most of it (`[laughs]`, `[1]`, `<br>`) is not a template slot.
static PLACEHOLDER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?x)
          \{\{?\s*[A-Za-z0-9_][A-Za-z0-9_.\-]{0,40}\s*\}\}?   # {name}, {{ user_name }}, {0}
        | \[[^\[\]\n]{1,80}\]                               # [NAME], [INSERT ...]
        | <[^<>\n]{1,80}>                                   # <NAME>, <insert date>
        | (?i:\blorem\s+ipsum\b)
        | \b(?:TODO|FIXME|TBD)\b
        | (?i:\bx{3,}\b)                                    # xxx, XXX-XX-XXXX
        ",
    )
    .expect("placeholder regex")
});

/// Scores one record. Deterministic: the same record always gets the same features.
///
/// A record without any non-blank message scores 0 on everything.
pub fn assess(r: &Record) -> Quality {
    let messages: Vec<(&str, &str)> = r
        .messages
        .iter()
        .filter(|m| !m.content.trim().is_empty())
        .map(|m| (m.role.as_str(), m.content.as_str()))
        .collect();
    if messages.is_empty() {
        let zero = QualityFeatures {
            turn_count: 0.0,
            length_balance: 0.0,
            lexical_diversity: 0.0,
            truncation: 0.0,
            repetition: 0.0,
            placeholders: 0.0,
        };
        return Quality {
            score: 0.0,
            features: zero,
        };
    }
    let normalized: Vec<String> = messages.iter().map(|(_, c)| normalize(c)).collect();
    let words: Vec<&str> = normalized
        .iter()
        .flat_map(|n| n.split(' ').filter(|w| !w.is_empty()))
        .collect();
    let features = QualityFeatures {
        turn_count: turn_count(&messages),
        length_balance: length_balance(&messages),
        lexical_diversity: lexical_diversity(&words),
        truncation: truncation(messages.last().map_or("", |(_, c)| c)),
        repetition: repetition(&normalized, &words),
        placeholders: placeholders(messages.iter().map(|(_, c)| *c)),
    };
    Quality {
        score: features.weighted_score(),
        features,
    }
}

impl QualityFeatures {
    fn as_array(&self) -> [f64; 6] {
        [
            self.turn_count,
            self.length_balance,
            self.lexical_diversity,
            self.truncation,
            self.repetition,
            self.placeholders,
        ]
    }

    /// The weighted mean with [`WEIGHTS`], clamped to 0..1.
    pub fn weighted_score(&self) -> f64 {
        let sum: f64 = self
            .as_array()
            .iter()
            .zip(WEIGHTS.as_array())
            .map(|(f, w)| f * w)
            .sum();
        sum.clamp(0.0, 1.0)
    }
}

/// Bin of a score among [`HISTOGRAM_BINS`] equal bins `[0, 0.1) … [0.9, 1.0]`; 1.0 goes in the
/// last bin, out-of-range scores in the nearest one, NaN in the first.
pub fn histogram_bin(score: f64) -> usize {
    if score.is_nan() || score <= 0.0 {
        return 0;
    }
    // The cast saturates, so huge scores land in the last bin too.
    ((score * HISTOGRAM_BINS as f64) as usize).min(HISTOGRAM_BINS - 1)
}

fn turn_count(messages: &[(&str, &str)]) -> f64 {
    match messages
        .iter()
        .filter(|(role, _)| *role != "system")
        .count()
    {
        0 => 0.0,
        1 => 0.2,
        2 => 0.6,
        3 => 0.8,
        _ => 1.0,
    }
}

fn length_balance(messages: &[(&str, &str)]) -> f64 {
    let chars = |roles: &[&str]| -> usize {
        messages
            .iter()
            .filter(|(role, _)| roles.contains(role))
            .map(|(_, c)| c.trim().chars().count())
            .sum()
    };
    let (user, assistant) = (chars(USER_ROLES), chars(ASSISTANT_ROLES));
    if user == 0 || assistant == 0 {
        return 0.0;
    }
    let share = assistant as f64 / (user + assistant) as f64;
    (share.min(1.0 - share) / BALANCE_PLATEAU).min(1.0)
}

fn lexical_diversity(words: &[&str]) -> f64 {
    if words.is_empty() {
        return 0.0;
    }
    let ttr = if words.len() <= MATTR_WINDOW {
        words.iter().collect::<HashSet<_>>().len() as f64 / words.len() as f64
    } else {
        // Slide the window one word at a time, keeping counts, so the cost is linear.
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for w in &words[..MATTR_WINDOW] {
            *counts.entry(w).or_default() += 1;
        }
        let mut types_sum = counts.len();
        for i in MATTR_WINDOW..words.len() {
            let out = words[i - MATTR_WINDOW];
            if let Some(c) = counts.get_mut(out) {
                *c -= 1;
                if *c == 0 {
                    counts.remove(out);
                }
            }
            *counts.entry(words[i]).or_default() += 1;
            types_sum += counts.len();
        }
        let windows = words.len() - MATTR_WINDOW + 1;
        types_sum as f64 / (windows * MATTR_WINDOW) as f64
    };
    ((ttr - TTR_POOR) / (TTR_GOOD - TTR_POOR)).clamp(0.0, 1.0)
}

fn truncation(last: &str) -> f64 {
    let text = last.trim_end();
    if text.ends_with("...") || text.ends_with('…') {
        return 0.2;
    }
    // Closing quotes, brackets and markdown emphasis may follow the real last character.
    let core = text.trim_end_matches([')', ']', '}', '"', '\'', '”', '’', '»', '*', '_', '`', '~']);
    let Some(c) = core.chars().next_back() else {
        return 0.0;
    };
    if matches!(c, '.' | '!' | '?' | '。' | '！' | '？') {
        return 1.0;
    }
    if matches!(
        c,
        ',' | ';' | ':' | '-' | '–' | '—' | '(' | '[' | '{' | '/' | '&' | '+' | '='
    ) {
        return 0.1;
    }
    if c.is_alphanumeric() {
        let last_word: String = core
            .rsplit(|ch: char| !ch.is_alphanumeric() && ch != '\'')
            .next()
            .unwrap_or("")
            .to_lowercase();
        return if DANGLING_WORDS.contains(&last_word.as_str()) {
            0.1
        } else {
            0.6
        };
    }
    // Emoji and other symbols end chat messages naturally.
    1.0
}

fn repetition(normalized: &[String], words: &[&str]) -> f64 {
    let mut seen_messages = HashSet::new();
    let mut long_messages = 0usize;
    let mut duplicates = 0usize;
    for n in normalized {
        // "ok", "thank you" and the like recur in good conversations.
        if n.split(' ').count() < 3 {
            continue;
        }
        long_messages += 1;
        if !seen_messages.insert(n.as_str()) {
            duplicates += 1;
        }
    }
    let message_score = if long_messages == 0 {
        1.0
    } else {
        1.0 - 2.0 * duplicates as f64 / long_messages as f64
    };

    let ngram_score = if words.len() < 4 {
        1.0
    } else {
        let mut seen = HashSet::new();
        let total = words.len() - 3;
        let repeated = words.windows(4).filter(|g| !seen.insert(*g)).count();
        let share = repeated as f64 / total as f64;
        1.0 - (share - NGRAM_REPEAT_OK) / (NGRAM_REPEAT_BAD - NGRAM_REPEAT_OK)
    };
    message_score.min(ngram_score).clamp(0.0, 1.0)
}

fn placeholders<'a>(texts: impl Iterator<Item = &'a str>) -> f64 {
    let n: usize = texts
        .map(|t| {
            PLACEHOLDER
                .find_iter(t)
                .filter(|m| is_placeholder(m.as_str()))
                .count()
        })
        .sum();
    1.0 / (1.0 + 2.0 * n as f64)
}

/// Whether a regex candidate is a template slot. Bracketed or angled text counts only when it
/// is shouting-case (`[CLIENT NAME]`, `<NAME>`) or an instruction (`[insert date]`,
/// `<your name>`), and never when it is one of the [`REDACTION_TAGS`].
fn is_placeholder(m: &str) -> bool {
    let inner = match (m.chars().next(), m.chars().next_back()) {
        (Some('['), Some(']')) | (Some('<'), Some('>')) => m[1..m.len() - 1].trim(),
        _ => return true,
    };
    if REDACTION_TAGS.contains(&inner) {
        return false;
    }
    let lower = inner.to_lowercase();
    if ["insert", "your ", "enter ", "placeholder", "name here"]
        .iter()
        .any(|p| lower.starts_with(p) || lower.ends_with(p.trim()))
    {
        return true;
    }
    inner.chars().any(|c| c.is_ascii_uppercase())
        && inner.chars().all(|c| {
            c.is_ascii_uppercase() || c.is_ascii_digit() || matches!(c, '_' | ' ' | '.' | '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_support::record;

    const GOOD: &[(&str, &str)] = &[
        (
            "client",
            "I've been struggling to sleep since I started the new job. My mind keeps racing \
             about everything I didn't finish during the day.",
        ),
        (
            "therapist",
            "That sounds exhausting. When you lie awake, what kinds of thoughts tend to show up \
             first?",
        ),
        (
            "client",
            "Mostly worries that my manager thinks I'm slow, and that I'll be let go before the \
             probation period ends.",
        ),
        (
            "therapist",
            "Those are heavy fears to carry at night. Have you had any feedback from your \
             manager so far, or is this a prediction your mind is making?",
        ),
        (
            "client",
            "Honestly, the only feedback was positive. I guess I'm assuming the worst.",
        ),
        (
            "therapist",
            "Noticing that is an important step. Let's look at a short wind-down routine you \
             could try this week, and write down the worries before bed.",
        ),
    ];

    fn with_last(content: &str) -> Record {
        let mut turns = GOOD.to_vec();
        turns.last_mut().expect("good has turns").1 = content;
        record("r1", &turns)
    }

    #[test]
    fn a_good_therapy_dialogue_scores_high() {
        let q = assess(&record("r1", GOOD));
        let f = q.features;
        assert_eq!(f.turn_count, 1.0);
        assert_eq!(f.length_balance, 1.0);
        assert_eq!(f.lexical_diversity, 1.0, "{f:?}");
        assert_eq!(f.truncation, 1.0);
        assert_eq!(f.repetition, 1.0);
        assert_eq!(f.placeholders, 1.0);
        assert!(q.score > 0.95, "{q:?}");
    }

    #[test]
    fn weights_sum_to_one() {
        let sum: f64 = WEIGHTS.as_array().iter().sum();
        assert!((sum - 1.0).abs() < 1e-12);
    }

    #[test]
    fn fewer_turns_score_lower() {
        let scores: Vec<f64> = (1..=4)
            .map(|n| assess(&record("r1", &GOOD[..n])).features.turn_count)
            .collect();
        assert_eq!(scores, [0.2, 0.6, 0.8, 1.0]);
        // System prompts are not turns.
        let mut turns = vec![("system", "You are a supportive counsellor.")];
        turns.push(GOOD[0]);
        assert_eq!(assess(&record("r1", &turns)).features.turn_count, 0.2);
        assert!(assess(&record("r1", &GOOD[..1])).score < assess(&record("r1", GOOD)).score);
    }

    #[test]
    fn one_sided_dialogue_is_unbalanced() {
        let long = "I hear you, and I want to understand more about what happened. ".repeat(20);
        let r = record(
            "r1",
            &[
                ("user", "Hi."),
                ("assistant", &long),
                ("user", "Ok."),
                ("assistant", &long),
            ],
        );
        let f = assess(&r).features;
        assert!(f.length_balance < 0.1, "{f:?}");
        let silent = record(
            "r1",
            &[
                ("user", "Hello there, how are you?"),
                ("system", "Be kind."),
            ],
        );
        assert_eq!(assess(&silent).features.length_balance, 0.0);
    }

    #[test]
    fn low_vocabulary_lowers_lexical_diversity() {
        let samey = "I feel bad and I feel sad and I feel bad. ".repeat(12);
        let r = record(
            "r1",
            &[("client", &samey), ("therapist", &samey.to_uppercase())],
        );
        let f = assess(&r).features;
        assert!(f.lexical_diversity < 0.3, "{f:?}");
        // Long but varied text is not penalised for its length (plain TTR would be a third).
        let long: Vec<(&str, &str)> = GOOD.iter().cycle().take(3 * GOOD.len()).copied().collect();
        assert_eq!(assess(&record("r1", &long)).features.lexical_diversity, 1.0);
    }

    #[test]
    fn truncated_endings_score_low() {
        assert_eq!(
            assess(&with_last("Let's try a routine."))
                .features
                .truncation,
            1.0
        );
        assert_eq!(
            assess(&with_last("Does that help?\"")).features.truncation,
            1.0
        );
        assert_eq!(
            assess(&with_last("See you next week 🙂"))
                .features
                .truncation,
            1.0
        );
        assert_eq!(
            assess(&with_last("sounds good see you then"))
                .features
                .truncation,
            0.6
        );
        assert_eq!(
            assess(&with_last("Let's try a routine that..."))
                .features
                .truncation,
            0.2
        );
        assert_eq!(
            assess(&with_last("Let's try a routine that…"))
                .features
                .truncation,
            0.2
        );
        assert_eq!(
            assess(&with_last("Let's try a routine and"))
                .features
                .truncation,
            0.1
        );
        assert_eq!(
            assess(&with_last("Let's try a routine for the"))
                .features
                .truncation,
            0.1
        );
        assert_eq!(
            assess(&with_last("Let's try a routine,"))
                .features
                .truncation,
            0.1
        );
        let cut = assess(&with_last(
            "Let's look at a short wind-down routine you could try and",
        ));
        assert!(cut.score < assess(&record("r1", GOOD)).score);
    }

    #[test]
    fn repeated_messages_and_ngrams_lower_repetition() {
        let mut turns = GOOD.to_vec();
        turns.push(GOOD[4]);
        turns.push(GOOD[5]);
        let f = assess(&record("r1", &turns)).features;
        // Two of eight messages repeat earlier ones: each costs twice its share.
        assert!(f.repetition <= 0.5, "{f:?}");

        let looping = "I understand how you feel about this. ".repeat(8);
        let f = assess(&with_last(&looping)).features;
        assert!(f.repetition < 0.5, "{f:?}");

        // Short acknowledgements may recur.
        let acks = record(
            "r1",
            &[
                ("client", "I think I will try journaling tonight."),
                ("therapist", "Okay."),
                ("client", "And maybe the breathing exercise as well."),
                ("therapist", "Okay."),
            ],
        );
        assert_eq!(assess(&acks).features.repetition, 1.0);
    }

    #[test]
    fn template_placeholders_are_counted() {
        for text in [
            "Hello {name}, welcome back.",
            "Hello {{ user_name }}, welcome back.",
            "Hello <NAME>, welcome back.",
            "Hello [CLIENT NAME], welcome back.",
            "Hello [INSERT NAME HERE], welcome back.",
            "Hello [insert name], welcome back.",
            "Lorem ipsum dolor sit amet.",
            "TODO: write the therapist's answer.",
            "Your case number is xxx.",
        ] {
            let f = assess(&with_last(text)).features;
            assert!((f.placeholders - 1.0 / 3.0).abs() < 1e-9, "{text}: {f:?}");
        }
        let two = assess(&with_last("Dear <NAME>, see you on [DATE].")).features;
        assert!((two.placeholders - 0.2).abs() < 1e-9);
    }

    #[test]
    fn redaction_tags_and_ordinary_brackets_are_not_placeholders() {
        let text = "You can reach me at [EMAIL] or [PHONE]; my SSN [SSN], card [CREDIT_CARD], \
                    IP [IP_ADDRESS], home [ADDRESS], born [DOB]. [laughs] See note [1]. I \
                    have a todo list and a <3 for you, x.";
        let f = assess(&with_last(text)).features;
        assert_eq!(f.placeholders, 1.0);
    }

    #[test]
    fn empty_records_score_zero() {
        let q = assess(&record("r1", &[("user", "   ")]));
        assert_eq!(q.score, 0.0);
        assert_eq!(q.features.turn_count, 0.0);
        assert_eq!(assess(&record("r1", &[])).score, 0.0);
    }

    #[test]
    fn assessment_is_deterministic_and_serializes() {
        let a = assess(&record("r1", GOOD));
        let b = assess(&record("r1", GOOD));
        assert_eq!(a, b);
        let v = serde_json::to_value(a).expect("serialize");
        assert_eq!(v["features"]["placeholders"], 1.0);
        assert!(v["score"].as_f64().is_some());
    }

    #[test]
    fn histogram_bins_cover_zero_to_one() {
        assert_eq!(histogram_bin(0.0), 0);
        assert_eq!(histogram_bin(0.05), 0);
        assert_eq!(histogram_bin(0.1), 1);
        assert_eq!(histogram_bin(0.55), 5);
        assert_eq!(histogram_bin(0.99), 9);
        assert_eq!(histogram_bin(1.0), 9);
        assert_eq!(histogram_bin(7.0), 9);
        assert_eq!(histogram_bin(-1.0), 0);
        assert_eq!(histogram_bin(f64::NAN), 0);
        for k in 0..HISTOGRAM_BINS {
            assert_eq!(histogram_bin(k as f64 / 10.0), k, "lower edge of bin {k}");
        }
    }
}

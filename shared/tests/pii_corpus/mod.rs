//! Labelled records for measuring the PII detector, and the scoring that reads them.
//!
//! A record is conversation text in which every planted identifier and every look-alike is known
//! by its byte range, and every identifier also by its *secrets*: the parts that must not be
//! readable after redaction (all digit groups of a phone number but its country code; the house
//! number, street name, unit, city, state and ZIP of an address; …). Scoring compares those ranges
//! with what [`pii::find_pii`] reports, so nothing depends on how a placeholder happens to read.
//!
//! Three generators fill the records, written apart from the detector's rules and from each
//! other: [`conversations`] (support chats, clinic and HR intake, delivery and IT threads),
//! [`holdout`] (notes, forms and text messages, with its own vocabulary and sentence shapes) and
//! [`fresh`] (e-mail-style prose, written after the rules were tuned on the other two).

#![allow(dead_code)]

pub mod conversations;
pub mod fresh;
pub mod holdout;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Range;

use mcp_shared::pii::{self, PiiKind};

// ---------------------------------------------------------------------------------------------
// Randomness

/// splitmix64: seeded, tiny, identical on every platform.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// A number in `lo..=hi`.
    pub fn int(&mut self, lo: u32, hi: u32) -> u32 {
        lo + self.below((hi - lo + 1) as usize) as u32
    }
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
    pub fn digit(&mut self) -> char {
        char::from(b'0' + self.below(10) as u8)
    }
    pub fn digits(&mut self, n: usize) -> String {
        (0..n).map(|_| self.digit()).collect()
    }
    /// Fills a digit pattern: `D` any digit, `N` 2-9, `Z` 1-9, anything else as written.
    pub fn fill(&mut self, pattern: &str) -> String {
        pattern
            .chars()
            .map(|c| match c {
                'D' => self.digit(),
                'N' => char::from(b'0' + self.int(2, 9) as u8),
                'Z' => char::from(b'0' + self.int(1, 9) as u8),
                c => c,
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Items and records

/// What the detector's placeholders distinguish: both IP versions share one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    Email,
    Phone,
    Ssn,
    Card,
    Ip,
    Address,
    Dob,
}

impl Family {
    pub const ALL: [Family; 7] = [
        Family::Email,
        Family::Phone,
        Family::Ssn,
        Family::Card,
        Family::Ip,
        Family::Address,
        Family::Dob,
    ];

    pub fn of(kind: PiiKind) -> Family {
        match kind {
            PiiKind::Email => Family::Email,
            PiiKind::Phone => Family::Phone,
            PiiKind::Ssn => Family::Ssn,
            PiiKind::CreditCard => Family::Card,
            PiiKind::Ipv4 | PiiKind::Ipv6 => Family::Ip,
            PiiKind::StreetAddress => Family::Address,
            PiiKind::DateOfBirth => Family::Dob,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Family::Email => "email",
            Family::Phone => "phone",
            Family::Ssn => "ssn",
            Family::Card => "credit_card",
            Family::Ip => "ip_address",
            Family::Address => "address",
            Family::Dob => "date_of_birth",
        }
    }
}

/// A planted identifier: its text and the byte ranges of its secrets within it.
pub struct Item {
    pub family: Family,
    pub form: &'static str,
    pub text: String,
    pub secrets: Vec<Range<usize>>,
}

impl Item {
    pub fn new(family: Family, form: &'static str) -> Item {
        Item {
            family,
            form,
            text: String::new(),
            secrets: Vec::new(),
        }
    }
    /// Text that may survive redaction (separators, "Apt", a street suffix, a country code).
    pub fn plain(&mut self, s: &str) -> &mut Item {
        self.text.push_str(s);
        self
    }
    /// Text that must not survive.
    pub fn secret(&mut self, s: &str) -> &mut Item {
        let start = self.text.len();
        self.text.push_str(s);
        if !s.is_empty() {
            self.secrets.push(start..self.text.len());
        }
        self
    }
    /// Every maximal run of digits in `s` is secret, the rest plain.
    pub fn digits_secret(&mut self, s: &str) -> &mut Item {
        let mut rest = s;
        while !rest.is_empty() {
            let split = rest
                .find(|c: char| {
                    c.is_ascii_digit() != rest.starts_with(|d: char| d.is_ascii_digit())
                })
                .unwrap_or(rest.len());
            let (head, tail) = rest.split_at(split);
            if head.starts_with(|c: char| c.is_ascii_digit()) {
                self.secret(head);
            } else {
                self.plain(head);
            }
            rest = tail;
        }
        self
    }
    pub fn lowercase(&mut self) -> &mut Item {
        self.text = self.text.to_lowercase();
        self
    }
    pub fn uppercase(&mut self) -> &mut Item {
        self.text = self.text.to_uppercase();
        self
    }
    pub fn take(&mut self) -> Item {
        Item {
            family: self.family,
            form: self.form,
            text: std::mem::take(&mut self.text),
            secrets: std::mem::take(&mut self.secrets),
        }
    }
}

#[derive(Debug, Clone)]
pub enum Label {
    Pii {
        family: Family,
        form: &'static str,
        secrets: Vec<Range<usize>>,
    },
    /// Something that looks like an identifier of `imitates` but is not personal data.
    LookAlike {
        imitates: Family,
        category: &'static str,
    },
}

#[derive(Debug, Clone)]
pub struct Span {
    pub range: Range<usize>,
    pub label: Label,
}

#[derive(Default)]
pub struct Record {
    pub text: String,
    pub spans: Vec<Span>,
}

impl Record {
    pub fn say(&mut self, s: &str) -> &mut Record {
        self.text.push_str(s);
        self
    }
    pub fn pii(&mut self, item: Item) -> &mut Record {
        let start = self.text.len();
        self.text.push_str(&item.text);
        self.spans.push(Span {
            range: start..self.text.len(),
            label: Label::Pii {
                family: item.family,
                form: item.form,
                secrets: item
                    .secrets
                    .iter()
                    .map(|r| start + r.start..start + r.end)
                    .collect(),
            },
        });
        self
    }
    pub fn look_alike(&mut self, imitates: Family, category: &'static str, s: &str) -> &mut Record {
        let start = self.text.len();
        self.text.push_str(s);
        self.spans.push(Span {
            range: start..self.text.len(),
            label: LookAlike { imitates, category },
        });
        self
    }
    /// Fills the `{}` slots of a template, in order, with the given pieces.
    pub fn template(&mut self, template: &str, mut fill: impl FnMut(&mut Record, usize)) {
        for (i, part) in template.split("{}").enumerate() {
            if i > 0 {
                fill(self, i - 1);
            }
            self.say(part);
        }
    }
}

use Label::LookAlike;

/// One piece a template slot can take.
pub enum Slot {
    Pii(Item),
    LookAlike(Family, &'static str, String),
}

impl Record {
    pub fn slot(&mut self, slot: Slot) -> &mut Record {
        match slot {
            Slot::Pii(item) => self.pii(item),
            Slot::LookAlike(f, c, s) => self.look_alike(f, c, &s),
        }
    }
    /// A template with one slot.
    pub fn fill(&mut self, template: &str, slot: Slot) -> &mut Record {
        let mut slot = Some(slot);
        self.template(template, |r, _| {
            if let Some(s) = slot.take() {
                r.slot(s);
            }
        });
        self
    }
}

// ---------------------------------------------------------------------------------------------
// Scoring

#[derive(Default, Clone)]
pub struct Tally {
    pub planted: usize,
    pub detected: usize,
    pub fully_redacted: usize,
    pub placeholders: usize,
    pub placeholders_right: usize,
    pub look_alikes: usize,
    pub look_alikes_kept: usize,
}

pub fn pct(n: usize, d: usize) -> f64 {
    if d == 0 {
        100.0
    } else {
        100.0 * n as f64 / d as f64
    }
}

impl Tally {
    pub fn recall(&self) -> f64 {
        pct(self.detected, self.planted)
    }
    pub fn full(&self) -> f64 {
        pct(self.fully_redacted, self.planted)
    }
    pub fn precision(&self) -> f64 {
        pct(self.placeholders_right, self.placeholders)
    }
    pub fn kept(&self) -> f64 {
        pct(self.look_alikes_kept, self.look_alikes)
    }
}

pub struct Report {
    pub name: &'static str,
    pub records: usize,
    pub tallies: BTreeMap<Family, Tally>,
    /// Per look-alike category: (count, kept).
    pub categories: BTreeMap<(Family, &'static str), (usize, usize)>,
    /// Per planted form: (count, fully redacted).
    pub forms: BTreeMap<(Family, &'static str), (usize, usize)>,
    pub failures: Vec<(Family, String)>,
}

fn overlaps(a: &Range<usize>, b: &Range<usize>) -> bool {
    a.start < b.end && b.start < a.end
}

fn covered(r: &Range<usize>, hits: &[pii::PiiMatch]) -> bool {
    // Hits are ordered and disjoint: walk them over the range.
    let mut at = r.start;
    for h in hits {
        if h.range.end <= at {
            continue;
        }
        if h.range.start > at {
            return false;
        }
        at = h.range.end;
        if at >= r.end {
            return true;
        }
    }
    at >= r.end
}

fn show(record: &Record, hits: &[pii::PiiMatch]) -> String {
    let (out, _) = pii::redact_text(&record.text);
    let found: Vec<String> = hits
        .iter()
        .map(|h| format!("{}={:?}", h.kind, &record.text[h.range.clone()]))
        .collect();
    format!(
        "    input:  {}\n    output: {out}\n    found:  {found:?}",
        record.text
    )
}

pub fn score(name: &'static str, records: &[Record]) -> Report {
    let mut report = Report {
        name,
        records: records.len(),
        tallies: BTreeMap::new(),
        categories: BTreeMap::new(),
        forms: BTreeMap::new(),
        failures: Vec::new(),
    };
    for record in records {
        let hits = pii::find_pii(&record.text);
        let (_, kinds) = pii::redact_text(&record.text);
        assert_eq!(
            kinds,
            hits.iter().map(|h| h.kind).collect::<Vec<_>>(),
            "{}",
            record.text
        );
        assert_eq!(
            pii::contains_pii(&record.text),
            !hits.is_empty(),
            "{}",
            record.text
        );

        for span in &record.spans {
            match &span.label {
                Label::Pii {
                    family,
                    form,
                    secrets,
                } => {
                    let t = report.tallies.entry(*family).or_default();
                    t.planted += 1;
                    let detected = hits
                        .iter()
                        .any(|h| Family::of(h.kind) == *family && overlaps(&h.range, &span.range));
                    let leaked: Vec<&str> = secrets
                        .iter()
                        .filter(|r| !covered(r, &hits))
                        .map(|r| &record.text[r.clone()])
                        .collect();
                    t.detected += usize::from(detected);
                    t.fully_redacted += usize::from(leaked.is_empty());
                    let f = report.forms.entry((*family, form)).or_default();
                    f.0 += 1;
                    f.1 += usize::from(leaked.is_empty());
                    if !leaked.is_empty() || !detected {
                        report.failures.push((
                            *family,
                            format!(
                                "MISS {} [{form}] {:?} leaked {leaked:?}\n{}",
                                family.name(),
                                &record.text[span.range.clone()],
                                show(record, &hits)
                            ),
                        ));
                    }
                }
                Label::LookAlike { imitates, category } => {
                    let t = report.tallies.entry(*imitates).or_default();
                    t.look_alikes += 1;
                    let kept = !hits.iter().any(|h| overlaps(&h.range, &span.range));
                    t.look_alikes_kept += usize::from(kept);
                    let c = report.categories.entry((*imitates, category)).or_default();
                    c.0 += 1;
                    c.1 += usize::from(kept);
                    if !kept {
                        report.failures.push((
                            *imitates,
                            format!(
                                "CHANGED look-alike {} [{category}] {:?}\n{}",
                                imitates.name(),
                                &record.text[span.range.clone()],
                                show(record, &hits)
                            ),
                        ));
                    }
                }
            }
        }

        for h in &hits {
            let family = Family::of(h.kind);
            let right = record.spans.iter().any(|s| {
                matches!(&s.label, Label::Pii { family: f, .. } if *f == family)
                    && overlaps(&s.range, &h.range)
            });
            let t = report.tallies.entry(family).or_default();
            t.placeholders += 1;
            t.placeholders_right += usize::from(right);
            if !right {
                let planted_here = record
                    .spans
                    .iter()
                    .any(|s| matches!(s.label, Label::Pii { .. }) && overlaps(&s.range, &h.range));
                // A look-alike that was changed is reported above already.
                let on_look_alike = record.spans.iter().any(|s| {
                    matches!(s.label, Label::LookAlike { .. }) && overlaps(&s.range, &h.range)
                });
                if !on_look_alike {
                    report.failures.push((
                        family,
                        format!(
                            "WRONG PLACEHOLDER {} {:?}{}\n{}",
                            family.name(),
                            &record.text[h.range.clone()],
                            if planted_here {
                                " (other kind planted)"
                            } else {
                                " (in plain text)"
                            },
                            show(record, &hits)
                        ),
                    ));
                }
            }
        }
    }
    report
}

impl Report {
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "\n{} ({} records)\n{:<14} {:>7} {:>8} {:>8} {:>12} {:>9} {:>10}",
            self.name,
            self.records,
            "kind",
            "planted",
            "recall",
            "full",
            "precision",
            "look-alk",
            "kept"
        );
        for f in Family::ALL {
            let t = self.tallies.get(&f).cloned().unwrap_or_default();
            let _ = writeln!(
                s,
                "{:<14} {:>7} {:>7.2}% {:>7.2}% {:>7.2}% {:>3} {:>9} {:>9.2}%",
                f.name(),
                t.planted,
                t.recall(),
                t.full(),
                t.precision(),
                format!("/{}", t.placeholders),
                t.look_alikes,
                t.kept()
            );
        }
        s
    }

    pub fn details(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "\n{}: forms below 100% full redaction", self.name);
        for ((f, form), (n, ok)) in &self.forms {
            if ok < n {
                let _ = writeln!(s, "  {:<14} {form:<34} {ok:>5}/{n:<5}", f.name());
            }
        }
        let _ = writeln!(s, "{}: look-alike categories below 100% kept", self.name);
        for ((f, cat), (n, ok)) in &self.categories {
            if ok < n {
                let _ = writeln!(s, "  {:<14} {cat:<34} {ok:>5}/{n:<5}", f.name());
            }
        }
        s
    }

    pub fn failures(&self, per_family: usize) -> String {
        let mut s = String::new();
        let mut shown: BTreeMap<Family, usize> = BTreeMap::new();
        for (f, text) in &self.failures {
            let n = shown.entry(*f).or_default();
            if *n < per_family {
                *n += 1;
                let _ = writeln!(s, "{text}");
            }
        }
        s
    }

    /// The bar, per kind: full redaction ≥ 99.5%, placeholder precision ≥ 98%, look-alikes
    /// kept ≥ 99%. Returns what falls short.
    pub fn shortfalls(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (f, t) in &self.tallies {
            if t.planted > 0 && t.full() < 99.5 {
                out.push(format!(
                    "{} {}: full redaction {:.2}%",
                    self.name,
                    f.name(),
                    t.full()
                ));
            }
            if t.placeholders > 0 && t.precision() < 98.0 {
                out.push(format!(
                    "{} {}: placeholder precision {:.2}%",
                    self.name,
                    f.name(),
                    t.precision()
                ));
            }
            if t.look_alikes > 0 && t.kept() < 99.0 {
                out.push(format!(
                    "{} {}: look-alikes kept {:.2}%",
                    self.name,
                    f.name(),
                    t.kept()
                ));
            }
        }
        out
    }
}

//! Evaluation of the PII detector against the product bar, on generated conversation text.
//!
//! Records are built from a seeded generator: therapy sessions, support chats and intake forms,
//! each with items of one kind (or several, for forms) planted in many surface forms, often next
//! to a look-alike, plus a set of records holding only look-alikes (versions, order and ticket
//! numbers, ISBNs, ZIP codes, dosages, readings, times, prices, plain dates, quantities next to
//! street names). Because every planted item is known, the expected output is known exactly.
//!
//! Per kind it measures:
//! - leak-free: none of the item's distinctive parts (last digits of a phone, the street line of
//!   an address, the octets of an IP, the local part of an e-mail, …) can still be read in the
//!   output, counting only occurrences beyond those in the surrounding text;
//! - placeholder: the item's kind is reported for its record;
//! - right kind: the record reports exactly the planted kinds;
//! - exact: the output is the input with each item replaced by its placeholder, nothing more.
//!
//! Look-alike records must come back unchanged. Run with `--nocapture` to see the table.

use std::collections::BTreeMap;

use mcp_shared::pii::{self, PiiKind};

const SEED: u64 = 0x5eed_0f9a_11c0_de42;
const PER_KIND: usize = 600;
const FORMS: usize = 400;
const NEGATIVES: usize = 3000;

/// xorshift64*: tiny, seeded, and the same on every platform.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn range(&mut self, lo: u32, hi: u32) -> u32 {
        lo + self.below((hi - lo + 1) as usize) as u32
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
    fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }
}

/// A planted item: its kind, its text, and the parts that must not survive.
struct Item {
    kind: PiiKind,
    text: String,
    parts: Vec<String>,
}

enum Piece {
    Text(String),
    Pii(Item),
}

struct Record {
    pieces: Vec<Piece>,
}

impl Record {
    fn input(&self) -> String {
        self.pieces
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.as_str(),
                Piece::Pii(i) => i.text.as_str(),
            })
            .collect()
    }
    fn expected(&self) -> String {
        self.pieces
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.as_str(),
                Piece::Pii(i) => i.kind.placeholder(),
            })
            .collect()
    }
    /// The text around the items, pieces kept apart so no part is formed across a join.
    fn context(&self) -> String {
        self.pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Text(t) => Some(t.as_str()),
                Piece::Pii(_) => None,
            })
            .collect::<Vec<_>>()
            .join("\u{1}")
    }
    fn items(&self) -> impl Iterator<Item = &Item> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Pii(i) => Some(i),
            Piece::Text(_) => None,
        })
    }
}

/// Occurrences of `part`; alphabetic parts only as whole words, so "Oak" is not found in "Oakland".
fn occurrences(hay: &str, part: &str) -> usize {
    if !part.chars().any(|c| c.is_ascii_alphabetic()) || part.contains(['@', '.', ':']) {
        return hay.matches(part).count();
    }
    let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    hay.match_indices(part)
        .filter(|(i, _)| {
            !word(hay[..*i].chars().next_back()) && !word(hay[i + part.len()..].chars().next())
        })
        .count()
}

/// Fills a template's `{}` with a record's item, wrapping it in filler and decoys.
fn record_with(rng: &mut Rng, template: &str, item: Item) -> Record {
    let (before, after) = template.split_once("{}").expect("template has a slot");
    let mut pieces = Vec::new();
    let mut lead = String::new();
    if rng.chance(60) {
        lead.push_str(rng.pick(FILLER));
        lead.push(' ');
    }
    if rng.chance(35) {
        lead.push_str(&negative_sentence(rng).1);
        lead.push(' ');
    }
    lead.push_str(before);
    pieces.push(Piece::Text(lead));
    pieces.push(Piece::Pii(item));
    let mut tail = after.to_string();
    if rng.chance(35) {
        tail.push(' ');
        tail.push_str(&negative_sentence(rng).1);
    }
    if rng.chance(50) {
        tail.push(' ');
        tail.push_str(rng.pick(FILLER));
    }
    pieces.push(Piece::Text(tail));
    Record { pieces }
}

const FILLER: &[&str] = &[
    "Therapist: How have you been sleeping this week?",
    "Client: Honestly, not great. I keep waking up before dawn.",
    "Therapist: What do you notice in your body when that happens?",
    "Client: My chest gets tight and I start replaying old conversations.",
    "Therapist: That sounds exhausting. Let's slow down for a moment.",
    "Client: I tried the breathing exercise, it helped a little.",
    "Therapist: I'm glad you noticed that. What made it easier?",
    "Client: My manager keeps piling on work and I can't say no.",
    "Therapist: It sounds like boundaries at work feel risky right now.",
    "Client: My sister says I'm overreacting, but it doesn't feel that way.",
    "Therapist: Your feelings make sense given everything going on.",
    "Client: I skipped the gym again, which made me feel worse.",
    "Agent: Thanks for reaching out! How can I help today?",
    "Customer: The app keeps logging me out every few minutes.",
    "Agent: I'm sorry about that, let me take a look at your account.",
    "Customer: I've already reinstalled it twice.",
    "Agent: Could you tell me which device you're using?",
    "Customer: It's an older Android tablet, nothing fancy.",
    "Agent: Got it. I've escalated this to our technical team.",
    "Customer: Great, thanks. How long will that take?",
    "Agent: Usually a day or two, and we'll email you with updates.",
    "Customer: The refund still hasn't shown up on my statement.",
    "Agent: I understand the frustration, let me check the status.",
    "Customer: Also, the delivery driver left it at the wrong door.",
    "user: can you summarize what we discussed last time?",
    "assistant: Sure. We talked about your sleep routine and stress at work.",
    "user: ok thanks, that helps",
    "assistant: Is there anything else you'd like to go over?",
    "Client: I don't know. Maybe. It's been a long week.",
    "Therapist: We can take it one step at a time.",
];

// ---------------------------------------------------------------------------------------------
// Planted items

const FIRST: &[&str] = &[
    "ann", "maria", "jose", "li", "priya", "tom", "dana", "kwame", "sofia", "liam", "noah", "emma",
    "olivia", "ahmed", "yuki", "fatima", "lucas", "chloe", "mateo", "grace", "omar", "hannah",
];
const LAST: &[&str] = &[
    "lee", "garcia", "smith", "nguyen", "patel", "okafor", "johnson", "kim", "rossi", "mueller",
    "silva", "cohen", "brown", "tanaka", "haddad", "walsh", "novak", "moreau", "jensen", "reyes",
];
const DOMAINS: &[&str] = &[
    "gmail.com",
    "yahoo.com",
    "outlook.com",
    "hotmail.com",
    "icloud.com",
    "proton.me",
    "example.org",
    "acme-corp.io",
    "mail.uni-bonn.de",
    "company.co.uk",
    "health.example.net",
];

fn email(rng: &mut Rng) -> Item {
    let (f, l) = (rng.pick(FIRST), rng.pick(LAST));
    let domain = rng.pick(DOMAINS);
    let label = domain.split('.').next().unwrap_or(domain);
    let n = rng.range(1, 99);
    let local = match rng.below(7) {
        0 => format!("{f}.{l}"),
        1 => format!("{}{l}{n}", &f[..1]),
        2 => format!("{f}_{l}+{}", rng.pick(&["work", "news", "shop"])),
        3 => format!("{f}{l}"),
        4 => format!("{f}-{}", &l[..1]),
        5 => format!("{}.{}", f.to_uppercase(), l.to_uppercase()),
        _ => format!("{l}.{f}{n}"),
    };
    match rng.below(10) {
        0 => {
            let spelled = domain.replace('.', " dot ");
            Item {
                kind: PiiKind::Email,
                text: format!("{f} dot {l} at {spelled}"),
                parts: vec![f.into(), l.into(), label.into()],
            }
        }
        1 => Item {
            kind: PiiKind::Email,
            text: format!("{local}[at]{}", domain.replace('.', "[dot]")),
            parts: vec![local.clone(), label.into()],
        },
        2 => Item {
            kind: PiiKind::Email,
            text: format!("{local}(at){domain}"),
            parts: vec![local.clone(), label.into()],
        },
        3 => Item {
            kind: PiiKind::Email,
            text: format!("{local}@{}", domain.to_uppercase()),
            parts: vec![local.clone(), domain.to_uppercase()],
        },
        _ => Item {
            kind: PiiKind::Email,
            text: format!("{local}@{domain}"),
            parts: vec![local.clone(), domain.into()],
        },
    }
}

/// Builds a phone item from its groups and the separators between them; every group of three
/// or more digits (after a country code) and the last two groups are distinctive.
fn phone_item(text: String, groups: &[String], cc: bool) -> Item {
    let mut parts: Vec<String> = groups
        .iter()
        .skip(usize::from(cc))
        .filter(|g| g.len() >= 3)
        .cloned()
        .collect();
    parts.push(groups[groups.len() - 1].clone());
    Item {
        kind: PiiKind::Phone,
        text,
        parts,
    }
}

/// Phone numbers in the forms people type; the bool says whether the form needs a phone word
/// in front to be told from an order number (bare digits, 7-digit local numbers).
fn phone(rng: &mut Rng) -> (Item, bool) {
    let area = format!("{}{}", rng.range(2, 9), rng.digits(2));
    let exch = format!("{}{}", rng.range(2, 9), rng.digits(2));
    let line = rng.digits(4);
    let g = vec![area.clone(), exch.clone(), line.clone()];
    let (a, e, l) = (&area, &exch, &line);
    let mut item = match rng.below(20) {
        0 => phone_item(format!("({a}) {e}-{l}"), &g, false),
        1 => phone_item(format!("{a}-{e}-{l}"), &g, false),
        2 => phone_item(format!("{a}.{e}.{l}"), &g, false),
        3 => phone_item(format!("{a} {e} {l}"), &g, false),
        4 => phone_item(format!("+1 {a} {e} {l}"), &g, false),
        5 => phone_item(format!("+1-{a}-{e}-{l}"), &g, false),
        6 => phone_item(format!("1-{a}-{e}-{l}"), &g, false),
        7 => phone_item(format!("+1 ({a}) {e}-{l}"), &g, false),
        8 => match rng.below(4) {
            0 => phone_item(format!("({a}){e}-{l}"), &g, false),
            1 => phone_item(format!("({a})-{e}-{l}"), &g, false),
            2 => phone_item(format!("{a} {e}-{l}"), &g, false),
            _ => phone_item(format!("+1.{a}.{e}.{l}"), &g, false),
        },
        9 => {
            let (x, y) = (rng.digits(4), rng.digits(4));
            let text = if rng.chance(30) {
                format!("+44 (0)20 {x} {y}")
            } else {
                format!("+44 20 {x} {y}")
            };
            phone_item(text, &["44".into(), "20".into(), x, y], true)
        }
        10 => {
            let (x, y) = (format!("7{}", rng.digits(3)), rng.digits(6));
            phone_item(format!("+44 {x} {y}"), &["44".into(), x, y], true)
        }
        11 => {
            let ds: Vec<String> = (0..4).map(|_| rng.digits(2)).collect();
            let text = format!("+33 {} {}", rng.range(1, 9), ds.join(" "));
            let mut groups = vec!["33".to_string()];
            groups.extend(ds.iter().cloned());
            let mut item = phone_item(text, &groups, true);
            item.parts.push(format!("{} {}", ds[2], ds[3]));
            item
        }
        12 => {
            let (x, y) = (format!("9{}", rng.digits(4)), rng.digits(5));
            phone_item(format!("+91 {x} {y}"), &["91".into(), x, y], true)
        }
        13 => {
            let (x, y) = (rng.digits(4), rng.digits(4));
            phone_item(
                format!("+61 2 {x} {y}"),
                &["61".into(), "2".into(), x, y],
                true,
            )
        }
        14 => {
            let x = rng.digits(7);
            phone_item(format!("+49 30 {x}"), &["49".into(), "30".into(), x], true)
        }
        15 => {
            let (x, y) = (rng.digits(4), rng.digits(4));
            phone_item(format!("020 {x} {y}"), &["020".into(), x, y], false)
        }
        16 => {
            let (x, y) = (format!("077{}", rng.digits(2)), rng.digits(6));
            phone_item(format!("{x} {y}"), &[x, y], false)
        }
        17 => {
            let text = format!("{a}{e}{l}");
            let mut item = phone_item(text.clone(), &g, false);
            item.parts.push(text);
            return (item, true);
        }
        18 => {
            let item = phone_item(format!("{e}-{l}"), &[exch.clone(), line.clone()], false);
            return (item, true);
        }
        _ => phone_item(format!("{a}-{e}-{l}"), &g, false),
    };
    if rng.chance(12) {
        let width = rng.range(2, 4) as usize;
        let ext = rng.digits(width);
        let form = rng.pick(&[" ext. ", " ext ", " x", " extension "]);
        item.text.push_str(form);
        item.text.push_str(&ext);
        item.parts.push(format!("{}{ext}", form.trim_start()));
    }
    (item, false)
}

fn luhn_digit(body: &str) -> u32 {
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, c)| {
            let d = u32::from(c - b'0');
            if i % 2 == 0 {
                let d2 = d * 2;
                if d2 > 9 { d2 - 9 } else { d2 }
            } else {
                d
            }
        })
        .sum();
    (10 - sum % 10) % 10
}

fn card_number(rng: &mut Rng) -> String {
    let (prefix, len) = rng.pick(&[
        ("4", 16),
        ("4", 16),
        ("4", 13),
        ("51", 16),
        ("55", 16),
        ("2221", 16),
        ("34", 15),
        ("37", 15),
        ("6011", 16),
        ("65", 16),
        ("36", 14),
    ]);
    let body = format!("{prefix}{}", rng.digits(len - 1 - prefix.len()));
    format!("{body}{}", luhn_digit(&body))
}

fn card(rng: &mut Rng) -> Item {
    let n = card_number(rng);
    let groups: Vec<String> = match n.len() {
        15 => vec![n[..4].into(), n[4..10].into(), n[10..].into()],
        14 => vec![n[..4].into(), n[4..10].into(), n[10..].into()],
        13 => vec![n.clone()],
        _ => n
            .as_bytes()
            .chunks(4)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect(),
    };
    let text = match rng.below(3) {
        0 => groups.join(" "),
        1 if groups.len() > 1 => groups.join("-"),
        _ => n.clone(),
    };
    let mut parts = groups.clone();
    parts.push(n[n.len() - 4..].to_string());
    if text == n {
        parts = vec![n.clone(), n[n.len() - 4..].to_string(), n[..6].to_string()];
    }
    Item {
        kind: PiiKind::CreditCard,
        text,
        parts,
    }
}

/// SSNs; the bool says whether the form (nine bare digits) needs an SSN word in front.
fn ssn(rng: &mut Rng) -> (Item, bool) {
    let mut area = rng.range(1, 899);
    if area == 666 {
        area = 665;
    }
    let (a, g, s) = (
        format!("{area:03}"),
        format!("{:02}", rng.range(1, 99)),
        format!("{:04}", rng.range(1, 9999)),
    );
    let (text, bare) = match rng.below(6) {
        0..=2 => (format!("{a}-{g}-{s}"), false),
        3 => (format!("{a} {g} {s}"), false),
        4 => (format!("{a}.{g}.{s}"), false),
        _ => (format!("{a}{g}{s}"), true),
    };
    let parts = if bare {
        vec![text.clone(), s.clone()]
    } else {
        vec![a, format!("{g}{}{s}", &text[3..4]), s]
    };
    (
        Item {
            kind: PiiKind::Ssn,
            text,
            parts,
        },
        bare,
    )
}

fn ipv4(rng: &mut Rng) -> Item {
    let o: Vec<u32> = match rng.below(4) {
        0 => vec![192, 168, rng.range(0, 255), rng.range(1, 254)],
        1 => vec![10, rng.range(0, 255), rng.range(0, 255), rng.range(1, 254)],
        _ => vec![
            rng.range(11, 223),
            rng.range(0, 255),
            rng.range(0, 255),
            rng.range(1, 254),
        ],
    };
    let ip = format!("{}.{}.{}.{}", o[0], o[1], o[2], o[3]);
    let parts = vec![
        ip.clone(),
        format!("{}.{}.{}", o[0], o[1], o[2]),
        format!("{}.{}.{}", o[1], o[2], o[3]),
    ];
    let text = match rng.below(8) {
        0 => format!("{ip}/{}", rng.pick(&[16, 24, 32])),
        _ => ip.clone(),
    };
    Item {
        kind: PiiKind::Ipv4,
        text,
        parts,
    }
}

/// A port is not personal, so it stays after the placeholder.
fn with_port(rng: &mut Rng, template: &str) -> String {
    if rng.chance(12) {
        template.replacen(
            "{}",
            &format!("{{}}:{}", rng.pick(&[22, 443, 8080, 3389])),
            1,
        )
    } else {
        template.to_string()
    }
}

fn ipv6(rng: &mut Rng) -> Item {
    let hex = |rng: &mut Rng| format!("{:x}", rng.next() & 0xffff);
    let groups: Vec<String> = (0..8).map(|_| hex(rng)).collect();
    let text = match rng.below(5) {
        0 => groups.join(":"),
        1 => format!("2001:db8::{}:{}:{}", groups[5], groups[6], groups[7]),
        2 => format!(
            "fe80::{}:{}:{}:{}",
            groups[4], groups[5], groups[6], groups[7]
        ),
        3 => format!(
            "{}:{}:{}::{}",
            groups[0].to_uppercase(),
            groups[1].to_uppercase(),
            groups[2].to_uppercase(),
            groups[7].to_uppercase()
        ),
        4 => format!(
            "2a02:{}:{}:{}::{}",
            groups[1], groups[2], groups[3], groups[7]
        ),
        _ => format!("fe80::{}:{}%eth0", groups[6], groups[7]),
    };
    let mut parts = vec![text.clone()];
    parts.extend(
        text.split(':')
            .map(|g| g.trim_end_matches("%eth0"))
            .filter(|g| g.len() >= 3 && !matches!(*g, "2001" | "db8" | "fe80" | "2a02"))
            .map(str::to_string),
    );
    Item {
        kind: PiiKind::Ipv6,
        text,
        parts,
    }
}

const STREETS: &[&str] = &[
    "Elm",
    "Oak",
    "Maple",
    "Cedar",
    "Pine",
    "Main",
    "Washington",
    "Lincoln",
    "Park",
    "Lake",
    "Sunset",
    "Massachusetts",
    "Highland",
    "Jefferson",
    "Church",
    "Old Mill",
    "Martin Luther King Jr",
    "5th",
    "42nd",
    "Willow Creek",
    "Beacon",
    "Magnolia",
    "Riverside",
];
const SUFFIXES: &[(&str, &str)] = &[
    ("Street", "St"),
    ("Avenue", "Ave"),
    ("Road", "Rd"),
    ("Boulevard", "Blvd"),
    ("Lane", "Ln"),
    ("Drive", "Dr"),
    ("Court", "Ct"),
    ("Place", "Pl"),
    ("Way", "Way"),
    ("Terrace", "Ter"),
    ("Parkway", "Pkwy"),
    ("Circle", "Cir"),
];
const CITIES: &[(&str, &str, &str)] = &[
    ("Springfield", "IL", "62704"),
    ("Cambridge", "MA", "02139"),
    ("Austin", "TX", "78701"),
    ("Portland", "OR", "97205"),
    ("Salt Lake City", "UT", "84101"),
    ("Brooklyn", "NY", "11201"),
    ("Oakland", "CA", "94612"),
    ("St. Louis", "MO", "63103"),
    ("Denver", "CO", "80202"),
];

fn street_address(rng: &mut Rng) -> Item {
    let number = match rng.below(4) {
        0 => rng.range(1, 99).to_string(),
        1 => rng.range(100, 999).to_string(),
        2 => rng.range(1000, 9999).to_string(),
        _ => rng.range(10000, 29999).to_string(),
    };
    let name = rng.pick(STREETS);
    let (full, abbr) = rng.pick(SUFFIXES);
    let lower = rng.chance(15);
    let mut text = number.clone();
    let mut parts = vec![number.clone()];
    if rng.chance(20) {
        text.push_str(rng.pick(&[" N.", " W", " East", " S."]));
    }
    text.push(' ');
    text.push_str(name);
    parts.extend(
        name.split(' ')
            .filter(|w| w.len() > 2 && !w.ends_with("th") && !w.ends_with("nd"))
            .map(str::to_string),
    );
    text.push(' ');
    let use_abbr = rng.chance(50);
    let suffix_dot = use_abbr && abbr != full && rng.chance(30);
    text.push_str(if use_abbr { abbr } else { full });
    let mut continued = false;
    if rng.chance(35) {
        let unit = match rng.below(4) {
            0 => format!("{}{}", rng.range(1, 20), rng.pick(&["A", "B", "C", "D"])),
            1 => rng.range(1, 40).to_string(),
            2 => rng.range(100, 999).to_string(),
            _ => format!("{}", rng.range(2, 9)),
        };
        let form = rng.pick(&[", Apt ", " Apt. ", ", Suite ", " #", ", Unit ", ", apt "]);
        if suffix_dot && form.starts_with(',') {
            text.push('.');
        }
        text.push_str(form);
        text.push_str(&unit);
        parts.push(unit);
        continued = true;
    }
    if rng.chance(45) {
        let (city, state, zip) = rng.pick(CITIES);
        if suffix_dot && !continued {
            text.push('.');
        }
        match rng.below(4) {
            0 => text.push_str(&format!(", {city}, {state} {zip}")),
            1 => text.push_str(&format!(", {city} {state} {zip}")),
            2 => text.push_str(&format!(", {city}, {state}")),
            _ => text.push_str(&format!(", {city}, {state} {zip}-{}", rng.digits(4))),
        }
        parts.push(zip.to_string());
    }
    if lower {
        text = text.to_lowercase();
        parts = parts.iter().map(|p| p.to_lowercase()).collect();
    }
    Item {
        kind: PiiKind::StreetAddress,
        text,
        parts,
    }
}

const MONTHS: &[&str] = &[
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// Dates of birth; the bool says whether the form has no year (only "my birthday is …" fits).
fn date_of_birth(rng: &mut Rng) -> (Item, bool) {
    let (y, m, d) = (rng.range(1930, 2010), rng.range(1, 12), rng.range(1, 28));
    let month = MONTHS[(m - 1) as usize];
    let short = &month[..3];
    let ord = match d {
        1 | 21 => "st",
        2 | 22 => "nd",
        3 | 23 => "rd",
        _ => "th",
    };
    let yy = y % 100;
    let (text, md) = match rng.below(14) {
        0 => (format!("{m:02}/{d:02}/{y}"), format!("{m:02}/{d:02}")),
        1 => (format!("{m}/{d}/{y}"), format!("{m}/{d}/")),
        2 => (format!("{m:02}-{d:02}-{y}"), format!("{m:02}-{d:02}")),
        3 => (format!("{y}-{m:02}-{d:02}"), format!("{m:02}-{d:02}")),
        4 => (format!("{d:02}.{m:02}.{y}"), format!("{d:02}.{m:02}")),
        5 if rng.chance(50) => (format!("{m}-{d}-{yy:02}"), format!("{m}-{d}-{yy:02}")),
        5 => (format!("{m}/{d}/{yy:02}"), format!("{m}/{d}/{yy:02}")),
        6 => (format!("{month} {d}, {y}"), format!("{month} {d}")),
        7 => (format!("{short} {d}, {y}"), format!("{short} {d}")),
        8 => (format!("{short}. {d} {y}"), format!("{short}. {d}")),
        9 => (format!("{d} {month} {y}"), format!("{d} {month}")),
        10 => (format!("{d}{ord} {month} {y}"), format!("{d}{ord} {month}")),
        11 => (
            format!("{d}{ord} of {month}, {y}"),
            format!("{d}{ord} of {month}"),
        ),
        12 => (
            format!("{month} {d}{ord}, {y}"),
            format!("{month} {d}{ord}"),
        ),
        _ => {
            let text = format!("{month} {d}");
            let item = Item {
                kind: PiiKind::DateOfBirth,
                parts: vec![text.clone()],
                text,
            };
            return (item, true);
        }
    };
    let item = Item {
        kind: PiiKind::DateOfBirth,
        parts: vec![text.clone(), y.to_string(), md],
        text,
    };
    (item, false)
}

// ---------------------------------------------------------------------------------------------
// Templates

const EMAIL_T: &[&str] = &[
    "Client: You can email me at {} if the session moves.",
    "Customer: my login is {} but the reset link never arrives.",
    "Agent: I've sent the receipt to {}, can you check your spam folder?",
    "Customer: please update the contact email to {}.",
    "Therapist: I'll send the worksheet to {} tonight.",
    "user: my work address is {} — don't use the old one",
    "Customer: it's {}, all lowercase.",
    "Client: my wife reads {} so please use my personal one.",
    "{} is the best way to reach me.",
    "Customer: Hi, this is Dana ({}), I wrote last week about the refund.",
];
const PHONE_T: &[&str] = &[
    "Client: My cell is {} if you need to reschedule.",
    "Customer: you can call me back at {}.",
    "Agent: I have {} on file, is that still the best number?",
    "Customer: please update my account to {} since I changed carriers.",
    "Client: if I'm not answering, my sister's number is {}.",
    "Customer: text {} when the technician is on the way.",
    "Therapist: The crisis line is on the sheet, and my office line is {}.",
    "{} — that's my mobile, evenings are best.",
    "Customer: I tried calling from {} twice yesterday.",
    "user: the emergency contact is my dad, {}.",
    "Customer: ticket 48213 says to call {} but nobody picks up.",
];
/// A phone word right before the slot, as people write when the number is bare digits.
const PHONE_CUE_T: &[&str] = &[
    "Customer: my phone number is {}.",
    "Client: just text me at {} after the appointment.",
    "Customer: cell {}, evenings only.",
    "Client: my number's {} if anything changes.",
    "Customer: you can reach me at {}.",
    "Agent: please call {} to confirm.",
];
const SSN_T: &[&str] = &[
    "Customer: my SSN is {} for the verification.",
    "Client: the form asks for my social, it's {}.",
    "Customer: sorry, I typed my whole social security number, {}, into the chat.",
    "SSN: {}",
    "Client: insurance wanted my social security number {} and I panicked.",
    "Customer: here's my ssn {} and the account is under my name.",
];
/// Only for the dashed and spaced forms, which need no SSN word.
const SSN_PLAIN_T: &[&str] = &[
    "Customer: it's {}, the same one on my tax return.",
    "Client: the clinic wrote {} on the intake sheet, is that safe?",
];
const CARD_T: &[&str] = &[
    "Customer: the card I used was {}, expiring 09/27.",
    "Customer: charge it to {} please.",
    "Client: I paid the copay with {} and got charged twice.",
    "Agent: please don't post card numbers here, I see you typed {}.",
    "Customer: card number {} cvv on the back",
    "user: my visa is {}",
    "Customer: try {} instead, the other one was declined.",
];
const IPV4_T: &[&str] = &[
    "Customer: the dashboard shows a login from {} that wasn't me.",
    "Customer: my home IP is {} if you need to whitelist it.",
    "Agent: requests are coming from {}, is that your office?",
    "Customer: after I upgraded the firmware, {} stopped responding.",
    "user: I can ping {} but not the gateway.",
    "Customer: the server at {} keeps timing out.",
    "Customer: we're behind {}, our static address.",
    "user: ssh into {} fails with permission denied",
];
const IPV6_T: &[&str] = &[
    "Customer: the login alert came from {} this morning.",
    "user: my router hands out {} to the laptop.",
    "Agent: I see a session from [{}]:443, is that you?",
    "Customer: the firewall log lists {} over and over.",
    "{} is the address our ISP assigned.",
];
const ADDRESS_T: &[&str] = &[
    "Client: I moved to {} last month and it's been quieter.",
    "Customer: ship it to {}.",
    "Customer: the package was supposed to go to {}, not my old place.",
    "Agent: I have your billing address as {}, is that right?",
    "user: I live at {} if that matters for the coverage area",
    "Client: my mom's house at {} is where I grew up.",
    "Customer: please send the replacement to {} — there's a buzzer.",
    "{} is where the technician should go.",
];
const DOB_T: &[&str] = &[
    "Client: I was born on {} in Cleveland.",
    "Customer: my date of birth is {} if you need to verify.",
    "DOB: {}",
    "Agent: for verification, can you confirm your DOB? Customer: {}",
    "Client: born {}, so I'm older than I look.",
    "Customer: {} is my date of birth.",
    "b. {}",
    "Date of Birth: {}",
    "user: dob {} pls confirm",
    "Client: my daughter was born {}, right before the move.",
];
const BIRTHDAY_T: &[&str] = &[
    "Client: my birthday is {}, so this week is hard.",
    "Client: my birthday is {} and nobody remembered.",
];

fn positive(rng: &mut Rng, kind: PiiKind) -> Record {
    let (template, item) = match kind {
        PiiKind::Email => (rng.pick(EMAIL_T).to_string(), email(rng)),
        PiiKind::Phone => {
            let (item, needs_cue) = phone(rng);
            let t = if needs_cue { PHONE_CUE_T } else { PHONE_T };
            (rng.pick(t).to_string(), item)
        }
        PiiKind::Ssn => {
            let (item, bare) = ssn(rng);
            let t = if bare || rng.chance(60) {
                SSN_T
            } else {
                SSN_PLAIN_T
            };
            (rng.pick(t).to_string(), item)
        }
        PiiKind::CreditCard => (rng.pick(CARD_T).to_string(), card(rng)),
        PiiKind::Ipv4 => {
            let t = rng.pick(IPV4_T);
            (with_port(rng, t), ipv4(rng))
        }
        PiiKind::Ipv6 => (rng.pick(IPV6_T).to_string(), ipv6(rng)),
        PiiKind::StreetAddress => (rng.pick(ADDRESS_T).to_string(), street_address(rng)),
        PiiKind::DateOfBirth => {
            let (item, no_year) = date_of_birth(rng);
            let t = if no_year { BIRTHDAY_T } else { DOB_T };
            (rng.pick(t).to_string(), item)
        }
    };
    record_with(rng, &template, item)
}

/// Intake forms and verification messages with several kinds at once.
fn form(rng: &mut Rng) -> Record {
    let text = |s: &str| Piece::Text(s.to_string());
    let mut pieces = Vec::new();
    let (first, last) = (rng.pick(FIRST), rng.pick(LAST));
    if rng.chance(50) {
        pieces.push(text(&format!("Intake form | Name: {first} {last} | DOB: ")));
        pieces.push(Piece::Pii(loop {
            let (item, no_year) = date_of_birth(rng);
            if !no_year {
                break item;
            }
        }));
        pieces.push(text(" | Phone: "));
        pieces.push(Piece::Pii(loop {
            let (item, needs_cue) = phone(rng);
            if !needs_cue {
                break item;
            }
        }));
        pieces.push(text(" | Email: "));
        pieces.push(Piece::Pii(email(rng)));
        pieces.push(text(" | Address: "));
        pieces.push(Piece::Pii(street_address(rng)));
        pieces.push(text(&format!(" | Reason: {}", rng.pick(FILLER))));
    } else {
        pieces.push(text("Customer: to verify, my email is "));
        pieces.push(Piece::Pii(email(rng)));
        pieces.push(text(", SSN "));
        pieces.push(Piece::Pii(ssn(rng).0));
        pieces.push(text(" and the card on file is "));
        pieces.push(Piece::Pii(card(rng)));
        pieces.push(text(". I logged in from "));
        pieces.push(Piece::Pii(ipv4(rng)));
        pieces.push(text(&format!(" yesterday. {}", rng.pick(FILLER))));
    }
    Record { pieces }
}

// ---------------------------------------------------------------------------------------------
// Look-alikes

fn luhn_failing(rng: &mut Rng, first: u32) -> String {
    let body = format!("{first}{}", rng.digits(14));
    let good = luhn_digit(&body);
    format!("{body}{}", (good + 1 + rng.range(0, 8)) % 10)
}

fn isbn13(rng: &mut Rng) -> String {
    let (g, r, p) = rng.pick(&[(1, 3, 5), (1, 4, 4), (2, 3, 4), (1, 2, 6)]);
    let body = format!("978{}{}{}", rng.digits(g), rng.digits(r), rng.digits(p));
    let sum: u32 = body
        .bytes()
        .enumerate()
        .map(|(i, c)| u32::from(c - b'0') * if i % 2 == 0 { 1 } else { 3 })
        .sum();
    let check = (10 - sum % 10) % 10;
    format!(
        "978-{}-{}-{}-{check}",
        &body[3..3 + g],
        &body[3 + g..3 + g + r],
        &body[3 + g + r..]
    )
}

fn isbn10(rng: &mut Rng) -> String {
    let (g, r, p) = rng.pick(&[(1, 3, 5), (1, 4, 4), (1, 2, 6)]);
    let body = format!("{}{}{}", rng.digits(g), rng.digits(r), rng.digits(p));
    let sum: u32 = body
        .bytes()
        .enumerate()
        .map(|(i, c)| u32::from(c - b'0') * (10 - i as u32))
        .sum();
    let check = (11 - sum % 11) % 11;
    let check = if check == 10 {
        "X".to_string()
    } else {
        check.to_string()
    };
    format!(
        "{}-{}-{}-{check}",
        &body[..g],
        &body[g..g + r],
        &body[g + r..]
    )
}

const NEGATIVE_CATEGORIES: &[&str] = &[
    "version",
    "order",
    "ticket",
    "isbn",
    "zip",
    "dosage",
    "reading",
    "time",
    "price",
    "plain date",
    "year",
    "quantity+street",
    "section",
    "score/range/count",
    "colon-hex",
    "clinical/misc",
];

/// One sentence holding a look-alike, with its category.
fn negative_sentence(rng: &mut Rng) -> (&'static str, String) {
    let cat = rng.below(NEGATIVE_CATEGORIES.len());
    let o = |rng: &mut Rng| rng.range(0, 255);
    let quad = |rng: &mut Rng| format!("{}.{}.{}.{}", rng.range(1, 20), o(rng), o(rng), o(rng));
    let month = rng.pick(MONTHS);
    let s = match cat {
        0 => {
            let v = quad(rng);
            match rng.below(7) {
                0 => format!("Agent: we shipped version {v} last night, can you update?"),
                1 => format!("Customer: I'm on v{v} and it still crashes."),
                2 => format!("Agent: the notes for release {v} mention that bug."),
                3 => format!("Customer: firmware {v} bricked my router."),
                4 => format!("Agent: build {v} is the one QA signed off."),
                5 => format!("Agent: please install version {v} from the store."),
                _ => format!("Customer: the About screen says Version {v}."),
            }
        }
        1 => {
            let first = rng.range(1, 9);
            let n = luhn_failing(rng, first);
            match rng.below(4) {
                0 => format!("Customer: my order #{n} never arrived."),
                1 => format!("Agent: I found order {n} under your name."),
                2 => format!(
                    "Customer: order {} {} {} {} was charged twice.",
                    &n[..4],
                    &n[4..8],
                    &n[8..12],
                    &n[12..]
                ),
                _ => format!(
                    "Customer: the order number is {}, can you check? Also tracking {}.",
                    rng.digits(10),
                    rng.digits(22)
                ),
            }
        }
        2 => {
            let t = format!("{}-{}-{}", rng.digits(3), rng.digits(4), rng.digits(2));
            match rng.below(3) {
                0 => format!("Agent: your ticket {t} has been escalated."),
                1 => format!("Customer: ticket {t} is still open after a week."),
                _ => format!("Agent: case {t} is closed, reply to reopen it."),
            }
        }
        3 => match rng.below(4) {
            0 => format!("Therapist: the workbook is ISBN {}.", isbn13(rng)),
            1 => format!("Client: I borrowed ISBN {} from the library.", isbn10(rng)),
            2 => format!("Therapist: the barcode says {}.", isbn13(rng)),
            _ => format!("Client: the ISBN is {}.", isbn13(rng).replace('-', "")),
        },
        4 => {
            let z = format!("{}{}", rng.range(0, 9), rng.digits(4));
            match rng.below(3) {
                0 => format!("Customer: we're in ZIP {z}, is service available?"),
                1 => format!("Client: we moved, the new zip code is {z}."),
                _ => format!("Agent: coverage for {z} starts next month."),
            }
        }
        5 => match rng.below(5) {
            0 => format!(
                "Client: the doctor raised me to {} mg of sertraline.",
                rng.pick(&[25, 50, 100, 150, 200, 500])
            ),
            1 => format!(
                "Therapist: are you still on {}.{} mg?",
                rng.range(0, 2),
                rng.range(1, 9)
            ),
            2 => format!("Client: I take {}mg at night.", rng.range(5, 300)),
            3 => format!(
                "Client: {} units of insulin before dinner.",
                rng.range(4, 40)
            ),
            _ => format!(
                "Client: {} mcg of levothyroxine daily.",
                rng.pick(&[25, 50, 75, 88, 112])
            ),
        },
        6 => match rng.below(3) {
            0 => format!(
                "Client: BP was {}/{} at the clinic.",
                rng.range(100, 170),
                rng.range(60, 105)
            ),
            1 => format!(
                "Client: blood pressure {}/{}, pulse {}.",
                rng.range(100, 170),
                rng.range(60, 105),
                rng.range(50, 110)
            ),
            _ => format!(
                "Client: my A1C came back at {}.{}%, down from {}.{}%.",
                rng.range(5, 9),
                rng.range(0, 9),
                rng.range(6, 11),
                rng.range(0, 9)
            ),
        },
        7 => match rng.below(3) {
            0 => format!(
                "Therapist: same time next week, {}:{:02}?",
                rng.range(1, 12),
                rng.range(0, 59)
            ),
            1 => format!(
                "Agent: the callback is at {}:{:02} pm.",
                rng.range(1, 12),
                rng.range(0, 59)
            ),
            _ => format!(
                "Customer: the error was logged at {:02}:{:02}:{:02}.",
                rng.range(0, 23),
                rng.range(0, 59),
                rng.range(0, 59)
            ),
        },
        8 => match rng.below(3) {
            0 => format!(
                "Customer: I was charged ${}.{:02} instead of ${}.{:02}.",
                rng.range(10, 999),
                rng.range(0, 99),
                rng.range(10, 999),
                rng.range(0, 99)
            ),
            1 => format!("Agent: the plan is ${} a month.", rng.range(5, 99)),
            _ => format!(
                "Agent: a refund of $1,{:03}.{:02} is on the way.",
                rng.range(0, 999),
                rng.range(0, 99)
            ),
        },
        9 => {
            let (y, m, d) = (rng.range(2019, 2026), rng.range(1, 12), rng.range(1, 28));
            match rng.below(5) {
                0 => format!("Agent: your appointment is on {m:02}/{d:02}/{y}."),
                1 => format!("Customer: the invoice is dated {y}-{m:02}-{d:02}."),
                2 => format!("Client: on {month} {d}, {y} I started the new job."),
                3 => format!("Agent: the deadline is {d} {month} {y}."),
                _ => format!("Client: I moved out on {m}/{d}/{:02}.", y % 100),
            }
        }
        10 => {
            let y = rng.range(1940, 2015);
            match rng.below(3) {
                0 => format!("Client: I was born in {y}, so I remember that."),
                1 => format!("Client: my son was born {} years ago.", rng.range(2, 30)),
                _ => format!("Client: we've lived here since {y}."),
            }
        }
        11 => {
            let name = rng.pick(STREETS);
            let n = rng.range(2, 12);
            match rng.below(5) {
                0 => format!("Client: we walked {n} blocks down {name} Street."),
                1 => format!("Customer: it's {n} minutes from {name} Avenue."),
                2 => format!("Client: I spent {n} hours on {name} Road yesterday."),
                3 => format!("Customer: there are {n} coffee shops on {name} Street."),
                _ => format!("Client: {n} of us drove down {name} Boulevard."),
            }
        }
        12 => {
            let v = quad(rng);
            match rng.below(2) {
                0 => format!("Agent: see section {v} of the handbook."),
                _ => format!("Therapist: chapter {v} covers that skill."),
            }
        }
        13 => match rng.below(4) {
            0 => format!("Therapist: your PHQ-9 score was {}.", rng.range(0, 27)),
            1 => format!(
                "Client: I sleep {}-{} hours a night.",
                rng.range(3, 5),
                rng.range(6, 8)
            ),
            2 => format!(
                "Client: I got {},{:03} steps today.",
                rng.range(2, 19),
                rng.range(0, 999)
            ),
            _ => format!(
                "Agent: about 1,{:03},{:03} users saw the outage.",
                rng.range(0, 999),
                rng.range(0, 999)
            ),
        },
        15 => match rng.below(10) {
            0 => format!(
                "Client: LDL {} mg/dL, HDL {}.",
                rng.range(70, 190),
                rng.range(30, 90)
            ),
            1 => format!(
                "Client: O2 sat {}%, temp {}.{}, HR {} bpm.",
                rng.range(90, 100),
                rng.range(97, 103),
                rng.range(0, 9),
                rng.range(50, 120)
            ),
            2 => format!(
                "Therapist: BMI {}.{} at intake.",
                rng.range(17, 40),
                rng.range(0, 9)
            ),
            3 => format!(
                "Agent: the office is open {}:00-{}:00.",
                rng.range(7, 10),
                rng.range(16, 19)
            ),
            4 => format!(
                "Client: they won {}-{} last night.",
                rng.range(0, 9),
                rng.range(0, 9)
            ),
            5 => format!(
                "Client: read pages {}-{} before next week.",
                rng.range(10, 200),
                rng.range(201, 400)
            ),
            6 => format!(
                "Customer: we're at {}.{}, -{}.{}.",
                rng.range(20, 60),
                rng.digits(4),
                rng.range(70, 125),
                rng.digits(4)
            ),
            7 => format!(
                "Customer: ZIP+4 is {}{}-{}.",
                rng.range(1, 9),
                rng.digits(4),
                rng.digits(4)
            ),
            8 => {
                let isbn = isbn13(rng).replace('-', " ");
                format!("Therapist: the book is {isbn} in the catalogue.")
            }
            _ => format!(
                "Client: the kids are {}, {} and {}.",
                rng.range(2, 9),
                rng.range(10, 14),
                rng.range(15, 17)
            ),
        },
        _ => match rng.below(2) {
            0 => format!(
                "Customer: the MAC is 00:1A:{:02X}:{:02X}:4D:5E.",
                rng.range(0, 255),
                rng.range(0, 255)
            ),
            _ => format!(
                "Agent: the job ran from {:02}:{:02}:{:02} to {:02}:{:02}:{:02}.",
                rng.range(0, 11),
                rng.range(0, 59),
                rng.range(0, 59),
                rng.range(12, 23),
                rng.range(0, 59),
                rng.range(0, 59)
            ),
        },
    };
    (NEGATIVE_CATEGORIES[cat], s)
}

fn negative(rng: &mut Rng) -> (&'static str, String) {
    let (cat, s) = negative_sentence(rng);
    let mut text = String::new();
    if rng.chance(50) {
        text.push_str(rng.pick(FILLER));
        text.push(' ');
    }
    text.push_str(&s);
    if rng.chance(50) {
        text.push(' ');
        text.push_str(rng.pick(FILLER));
    }
    (cat, text)
}

// ---------------------------------------------------------------------------------------------

const KNOWN_GAPS: &[(&str, &str)] = &[
    (
        "bare 10-digit phone, no phone word",
        "update my account to 5551234567 please",
    ),
    ("phone glued to a word", "phone-555-123-4567"),
    (
        "address without street suffix",
        "I live at 1600 Broadway now",
    ),
    (
        "city with neither comma nor state",
        "I live at 12 Oak St Denver",
    ),
    (
        "lower-case place-word street, no cue",
        "it's 42063 forest commons",
    ),
    ("PO box", "send it to P.O. Box 1234, Springfield"),
    (
        "version word far from the number",
        "the release we installed last night, 10.0.0.1, is slow",
    ),
    ("month and year of birth", "I was born in March 1985"),
    ("partial SSN", "the last four of my SSN are 6789"),
    (
        "spelled-out number",
        "my number is five five five, one two three, four five six seven",
    ),
    (
        "date of birth far from its cue",
        "I was born, as my mother tells it, on 3/14/1985",
    ),
];

#[derive(Default)]
struct Tally {
    planted: usize,
    leak_free: usize,
    placeholder: usize,
    right_kind: usize,
    exact: usize,
}

fn pct(n: usize, d: usize) -> f64 {
    if d == 0 {
        100.0
    } else {
        100.0 * n as f64 / d as f64
    }
}

#[test]
fn pii_detector_meets_the_bar() {
    let mut rng = Rng(SEED);
    let mut records = Vec::new();
    for &kind in PiiKind::ALL {
        for _ in 0..PER_KIND {
            records.push(positive(&mut rng, kind));
        }
    }
    for _ in 0..FORMS {
        records.push(form(&mut rng));
    }

    let mut tallies: BTreeMap<PiiKind, Tally> = BTreeMap::new();
    let mut failures = Vec::new();
    for record in &records {
        let input = record.input();
        let expected = record.expected();
        let context = record.context();
        let (output, found) = pii::redact_text(&input);
        assert_eq!(pii::contains_pii(&input), !found.is_empty(), "{input}");

        let mut planted: BTreeMap<PiiKind, usize> = BTreeMap::new();
        for item in record.items() {
            *planted.entry(item.kind).or_default() += 1;
        }
        let mut reported: BTreeMap<PiiKind, usize> = BTreeMap::new();
        for &k in &found {
            *reported.entry(k).or_default() += 1;
        }
        let right = planted == reported;
        let exact = output == expected;
        for item in record.items() {
            let t = tallies.entry(item.kind).or_default();
            t.planted += 1;
            let leaked: Vec<&String> = item
                .parts
                .iter()
                .filter(|p| occurrences(&output, p) > occurrences(&context, p))
                .collect();
            let has_placeholder = reported.get(&item.kind).copied().unwrap_or(0)
                >= planted[&item.kind]
                && output.contains(item.kind.placeholder());
            t.leak_free += usize::from(leaked.is_empty());
            t.placeholder += usize::from(has_placeholder);
            t.right_kind += usize::from(right);
            t.exact += usize::from(exact);
            if !leaked.is_empty() || !has_placeholder || !right || !exact {
                failures.push(format!(
                    "{:<14} leaked {leaked:?}\n    item:   {}\n    input:  {input}\n    output: {output}\n    found:  {found:?}",
                    item.kind.as_str(),
                    item.text
                ));
            }
        }
    }

    let mut negatives: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut changed = Vec::new();
    for _ in 0..NEGATIVES {
        let (cat, text) = negative(&mut rng);
        let (output, found) = pii::redact_text(&text);
        assert_eq!(pii::contains_pii(&text), !found.is_empty(), "{text}");
        let e = negatives.entry(cat).or_default();
        e.0 += 1;
        if output != text {
            e.1 += 1;
            changed.push(format!("{cat}: {text}\n    -> {output} {found:?}"));
        }
    }

    println!(
        "\n{:<15} {:>7} {:>10} {:>12} {:>11} {:>8}",
        "kind", "planted", "leak-free", "placeholder", "right kind", "exact"
    );
    for (kind, t) in &tallies {
        println!(
            "{:<15} {:>7} {:>9.2}% {:>11.2}% {:>10.2}% {:>7.2}%",
            kind.as_str(),
            t.planted,
            pct(t.leak_free, t.planted),
            pct(t.placeholder, t.planted),
            pct(t.right_kind, t.planted),
            pct(t.exact, t.planted)
        );
    }
    println!("\n{:<18} {:>7} {:>8}", "look-alikes", "records", "changed");
    for (cat, (n, c)) in &negatives {
        println!("{cat:<18} {n:>7} {c:>8}");
    }
    let negatives_total: usize = negatives.values().map(|v| v.0).sum();
    println!("{:<18} {negatives_total:>7} {:>8}", "total", changed.len());
    for f in failures.iter().take(40) {
        println!("MISS {f}");
    }
    for c in changed.iter().take(25) {
        println!("FALSE POSITIVE {c}");
    }

    // Forms outside the bar, kept visible so a change in them shows up in the table.
    println!("\nknown gaps (reported, not asserted):");
    for (form, text) in KNOWN_GAPS {
        let (out, _) = pii::redact_text(text);
        println!("  {form:<38} {text}\n  {:<38} -> {out}", "");
    }

    for (kind, t) in &tallies {
        assert!(
            pct(t.leak_free, t.planted) >= 99.5,
            "{kind}: leak-free {:.2}%",
            pct(t.leak_free, t.planted)
        );
        assert!(
            pct(t.placeholder, t.planted) >= 98.0,
            "{kind}: placeholder {:.2}%",
            pct(t.placeholder, t.planted)
        );
        assert!(
            pct(t.right_kind, t.planted) >= 98.0,
            "{kind}: right kind {:.2}%",
            pct(t.right_kind, t.planted)
        );
    }
    assert!(
        changed.is_empty(),
        "{} look-alike records changed",
        changed.len()
    );
}

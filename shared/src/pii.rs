//! PII redaction for free text and JSON.
//!
//! Finds e-mail addresses, phone numbers, US SSNs, payment-card numbers, IPv4 and IPv6 addresses,
//! street addresses and dates of birth, and replaces each with a placeholder naming its kind.
//! Used on agent metadata before it is stored and by the pipeline's validation stage.
//!
//! # How it decides
//! Conversation text is full of numbers that only look like PII: order, part and lot numbers,
//! versions, ISBNs, ZIP codes, dosages, readings, dates and prices. Loose regexes either leak or
//! shred those, so numbers are judged by their *shape* (the digit groups and the separators between
//! them) plus the few words around them:
//!
//! - one byte-level pass cuts the text into runs of digit groups joined by single separators
//!   (`555-123-4567`, `(555) 123-4567`, `+44 20 7946 0958`, `10.0.0.1/24`, `03/14/1985`); a run
//!   glued to letters (`v2.10.0.1`, `PHQ-9`, `A1C`) is skipped whole;
//! - each run, and each part of it between spaces, is classified:
//!   - IPv4: octets 0-255, unless a version word ("version", "release", "build", "firmware", "v",
//!     …) is nearer before it than a network word, or, with neither, right after it ("the 4.12.0.3
//!     update");
//!   - date of birth: a valid date with "born", "DOB", "date of birth", "birthday" or "b." among
//!     the six words before it or the five after it, not past a conjunction, and not one that
//!     stands next to another number and so describes that one;
//!   - SSN: 3-2-4 digits with an SSN word near, or without one when the digits are a valid SSN
//!     (area 001-899 but 666, group and serial not zero), the words right next to them do not name
//!     an identifier ("part number", "lot", "batch", "P/N", "(lot number)", …) and the sentence
//!     has not named a product's or shipment's number before them ("the part number for the valve
//!     is …"); nine bare digits only with an SSN word;
//!   - card: 13-19 digits, Luhn, an issuer's leading digit, card-like grouping, and not named an
//!     identifier ("IMEI …", "order #…");
//!   - phone: `+` or `00` and a country code; NANP 3-3-4 with optional `1`/`+1` and parentheses;
//!     national groupings (an area code of 2-6 digits, maybe in parentheses or before a slash,
//!     then groups of 2-8) of 10-12 digits with a trunk `0` or 10-11 without, unless the words
//!     next to them name an identifier; bare 10-12 digits, shorter groupings and groupings inside
//!     a longer run of numbers only with a phone word before or after them ("call", "my work
//!     line", "… is my cell", "M:"), and never a ZIP+4; extensions are taken along;
//! - a street address is tried only where a number is followed by a word: an anchored regex reads
//!   the street line (number, name, suffix, direction, units) and a small parser the locality
//!   after it, with or without commas or a line break: a city and a state code or name with or
//!   without a ZIP or postal code, a city and a ZIP, or a city alone after a comma where its
//!   clause ends. A unit written first ("Apt 5B, 42 Oak Ave") is taken along. The street's name
//!   may not contain everyday words, so "3 blocks down the road" stays; a suffix that is an
//!   everyday word too ("Park", "Run", "View") counts only in a capitalised name, before a unit or
//!   city, or after words like "live at" or "ship to"; and a small count before a street name that
//!   describes a plural noun ("3 Main St locations") is no address;
//! - the remaining regexes run only when a byte-level test says they can match: e-mail needs an
//!   `@` (file names such as `logo@2x.png` are not taken) or a spelled-out "at"/"dot" (a plain
//!   "at … dot …" needs a known top-level domain, a local part with a dot, digit or `+`, or two
//!   spelled dots), IPv6 two colons, a written date ("March 14, 1985") a birth word somewhere in
//!   the text.
//!
//! Context is read over a few words on either side and stops at a sentence end, and at a
//! speaker's name or form label ("Agent: …") once past the number's own label.
//!
//! In JSON, a value's key is context too: `{"dob": "1985-03-14"}`, `{"mobile": "5551234567"}`
//! and `{"ssn": "123456789"}` are redacted although the strings alone would not be.
//!
//! Text with no digit, `@` or spelled-out "at"/"dot" costs one or two passes over its bytes and
//! allocates nothing; `redact_json` leaves strings without PII untouched.
//!
//! # Known gaps
//! Numbers spelled out in words; addresses without a street suffix ("1600 Broadway"), PO boxes,
//! a city after a street line with neither a comma before it nor a state or ZIP after it, and a
//! lower-case street named with an everyday word ("42 forest commons") with no unit, city or
//! "live at" near it; "12 Oak St apartments" is read as a count of apartments; bare 10-digit phone
//! numbers without a phone word nearby; a version word more than three words before its number;
//! and partial identifiers ("the last four of my SSN are 6789") are not found.

use std::fmt;
use std::net::Ipv6Addr;
use std::ops::Range;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

/// The kinds of PII this module finds, with their placeholders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PiiKind {
    Email,
    Phone,
    Ssn,
    CreditCard,
    Ipv4,
    Ipv6,
    StreetAddress,
    DateOfBirth,
}

impl PiiKind {
    pub const ALL: &'static [PiiKind] = &[
        PiiKind::Email,
        PiiKind::Phone,
        PiiKind::Ssn,
        PiiKind::CreditCard,
        PiiKind::Ipv4,
        PiiKind::Ipv6,
        PiiKind::StreetAddress,
        PiiKind::DateOfBirth,
    ];

    /// The text that replaces a found item. Both IP versions share one placeholder: readers of
    /// redacted text care that an address was there, not which protocol it was.
    pub const fn placeholder(self) -> &'static str {
        match self {
            PiiKind::Email => "[EMAIL]",
            PiiKind::Phone => "[PHONE]",
            PiiKind::Ssn => "[SSN]",
            PiiKind::CreditCard => "[CREDIT_CARD]",
            PiiKind::Ipv4 | PiiKind::Ipv6 => "[IP_ADDRESS]",
            PiiKind::StreetAddress => "[ADDRESS]",
            PiiKind::DateOfBirth => "[DOB]",
        }
    }

    /// The snake_case name used in reports and settings.
    pub const fn as_str(self) -> &'static str {
        match self {
            PiiKind::Email => "email",
            PiiKind::Phone => "phone",
            PiiKind::Ssn => "ssn",
            PiiKind::CreditCard => "credit_card",
            PiiKind::Ipv4 => "ipv4",
            PiiKind::Ipv6 => "ipv6",
            PiiKind::StreetAddress => "street_address",
            PiiKind::DateOfBirth => "date_of_birth",
        }
    }
}

impl fmt::Display for PiiKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One item found in a text: its kind and its byte range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PiiMatch {
    pub kind: PiiKind,
    pub range: Range<usize>,
}

/// Every item of PII in `text`, in order, without overlaps.
pub fn find_pii(text: &str) -> Vec<PiiMatch> {
    detect(text, false, None)
        .into_iter()
        .map(|h| PiiMatch {
            kind: h.kind,
            range: h.start..h.end,
        })
        .collect()
}

/// Whether `text` holds any PII; stops at the first item, so it is the cheap test for policies
/// that reject rather than redact.
pub fn contains_pii(text: &str) -> bool {
    !detect(text, true, None).is_empty()
}

/// Redacts PII in `text`, returning the new text and the kinds found (with repeats, in order).
/// `text` with each match replaced by its kind's placeholder (`matches` in order, as
/// [`find_pii`] returns them).
pub fn replace(text: &str, matches: &[PiiMatch]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for m in matches {
        out.push_str(&text[last..m.range.start]);
        out.push_str(m.kind.placeholder());
        last = m.range.end;
    }
    out.push_str(&text[last..]);
    out
}

pub fn redact_text(text: &str) -> (String, Vec<PiiKind>) {
    let hits = detect(text, false, None);
    if hits.is_empty() {
        return (text.to_owned(), Vec::new());
    }
    (apply(text, &hits), hits.iter().map(|h| h.kind).collect())
}

/// Redacts every string in a JSON value (keys are left as they are). Returns the kinds found.
pub fn redact_json(value: &mut Value) -> Vec<PiiKind> {
    let mut found = Vec::new();
    redact_value(value, None, &mut found);
    found
}

/// `field` is what the enclosing key says the value is: in `{"dob": "1985-03-14"}` the birth
/// context is in the key, not in the string.
fn redact_value(value: &mut Value, field: Option<Cue>, found: &mut Vec<PiiKind>) {
    match value {
        Value::String(s) => {
            let hits = detect(s, false, field);
            if !hits.is_empty() {
                *s = apply(s, &hits);
                found.extend(hits.iter().map(|h| h.kind));
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| redact_value(v, field, found)),
        Value::Object(map) => map
            .iter_mut()
            .for_each(|(k, v)| redact_value(v, field_cue(k), found)),
        _ => {}
    }
}

/// What a JSON key says about its value: "dob", "birth_date", "dateOfBirth" → birth;
/// "phone", "mobileNumber" → phone; "ssn", "social_security_number" → SSN. Deliberately narrower
/// than the cues in running text ("text" is a message body far more often than a phone number).
fn field_cue(key: &str) -> Option<Cue> {
    let (mut social, mut security) = (false, false);
    let b = key.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_alphabetic() {
            i += 1;
            continue;
        }
        let s = i;
        i += 1;
        // camelCase: a word ends before an upper-case letter that follows a lower-case one.
        while i < b.len()
            && b[i].is_ascii_alphabetic()
            && !(b[i].is_ascii_uppercase() && b[i - 1].is_ascii_lowercase())
        {
            i += 1;
        }
        let mut buf = [0u8; 12];
        if i - s > buf.len() {
            continue;
        }
        let w = &mut buf[..i - s];
        w.copy_from_slice(&b[s..i]);
        w.make_ascii_lowercase();
        match &*w {
            b"dob" | b"birth" | b"birthday" | b"birthdate" | b"bday" | b"born" => {
                return Some(Cue::Birth);
            }
            b"phone" | b"mobile" | b"cell" | b"cellphone" | b"tel" | b"telephone" | b"fax"
            | b"landline" | b"whatsapp" | b"msisdn" => return Some(Cue::Phone),
            b"ssn" => return Some(Cue::Ssn),
            b"social" => social = true,
            b"security" => security = true,
            _ => {}
        }
    }
    (social && security).then_some(Cue::Ssn)
}

/// Luhn checksum over the digits of `s` (13 to 19 of them, as on payment cards).
pub fn luhn_valid(s: &str) -> bool {
    luhn(s.bytes().filter(u8::is_ascii_digit))
}

fn luhn(digits: impl DoubleEndedIterator<Item = u8>) -> bool {
    let (mut count, mut sum) = (0u32, 0u32);
    for c in digits.rev() {
        let d = u32::from(c - b'0');
        sum += if count % 2 == 1 {
            let d2 = d * 2;
            if d2 > 9 { d2 - 9 } else { d2 }
        } else {
            d
        };
        count += 1;
    }
    (13..=19).contains(&count) && sum.is_multiple_of(10)
}

#[derive(Debug, Clone, Copy)]
struct Hit {
    start: usize,
    end: usize,
    kind: PiiKind,
}

fn apply(text: &str, hits: &[Hit]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for h in hits {
        out.push_str(&text[last..h.start]);
        out.push_str(h.kind.placeholder());
        last = h.end;
    }
    out.push_str(&text[last..]);
    out
}

fn detect(text: &str, first_only: bool, field: Option<Cue>) -> Vec<Hit> {
    let b = text.as_bytes();
    let (mut digits, mut at_sign, mut colons) = (0usize, false, 0usize);
    for &c in b {
        match c {
            b'0'..=b'9' => digits += 1,
            b'@' => at_sign = true,
            b':' => colons += 1,
            _ => {}
        }
    }
    let mut scan = Scan {
        text,
        b,
        hits: Vec::new(),
        first_only,
        field,
    };
    if at_sign {
        scan.emails();
    }
    if !scan.done() && spelled_email_cue(b) {
        scan.spelled_emails();
    }
    if !scan.done() && digits > 0 {
        scan.numbers();
    }
    if !scan.done() && colons >= 2 {
        scan.ipv6();
    }
    if !scan.done() && digits > 0 && (field == Some(Cue::Birth) || has_birth_cue(b)) {
        scan.written_dates();
    }
    let mut hits = scan.hits;
    if hits.len() > 1 {
        merge(&mut hits);
    }
    hits
}

/// Sorts hits and fuses overlapping ones into their union, so no part of either survives; the
/// longer one names the kind.
fn merge(hits: &mut Vec<Hit>) {
    hits.sort_unstable_by_key(|h| (h.start, std::cmp::Reverse(h.end)));
    let mut kept = 0;
    for i in 0..hits.len() {
        let h = hits[i];
        if kept > 0 && h.start < hits[kept - 1].end {
            let last = &mut hits[kept - 1];
            if h.end - h.start > last.end - last.start {
                last.kind = h.kind;
            }
            last.end = last.end.max(h.end);
        } else {
            hits[kept] = h;
            kept += 1;
        }
    }
    hits.truncate(kept);
}

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)[\p{L}\p{N}._%+\-]+(?:'[\p{L}\p{N}._%+\-]+)*@[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?)*\.[a-z]{2,24}(?-u:\b)",
    )
    .expect("email regex")
});

/// "jane dot doe at example dot com", "jane[at]example[dot]org", "jane(at)example.com": people
/// spell addresses out to dodge filters. The plain " at " form is only taken with a spelled-out
/// dot and a known top-level domain or a local part with a dot, digit, '+', '_' or '-' in it, or
/// two spelled-out dots (checked after matching), since
/// "meet me at example.com" and "look at this dot thing" are not addresses; a bracketed "[at]"
/// says enough by itself.
static SPELLED_EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    let at = r"(?:\s*[\[({]\s*at\s*[\])}]\s*|\s+at\s+)";
    let dot = r"(?:\s*[\[({]\s*dot\s*[\])}]\s*|\s+dot\s+|\.)";
    Regex::new(&format!(
        r"(?i-u)[a-z0-9][a-z0-9._%+'\-]*(?:\s+dot\s+[a-z0-9][a-z0-9._%+'\-]*)*{at}[a-z0-9][a-z0-9\-]*(?:{dot}[a-z0-9][a-z0-9\-]*)*{dot}(?P<tld>[a-z]{{2,24}})\b"
    ))
    .expect("spelled email regex")
});

/// Top-level domains common enough to trust in an address spelled out in plain words.
fn common_tld(tld: &str) -> bool {
    const TLDS: &[&str] = &[
        "com", "org", "net", "edu", "gov", "mil", "int", "io", "co", "us", "uk", "de", "fr", "ca",
        "au", "nz", "ie", "in", "jp", "cn", "br", "mx", "es", "it", "nl", "ch", "se", "no", "dk",
        "fi", "pl", "be", "at", "ru", "info", "biz", "me", "dev", "app", "ai", "tv", "ly", "xyz",
        "online", "site", "tech", "law", "health", "email", "pro", "name", "fm", "cc", "eu", "za",
        "sg", "hk", "kr", "tw", "ar", "cl", "pt", "gr", "cz", "hu", "ro", "il", "ae", "tr",
    ];
    TLDS.iter().any(|t| t.eq_ignore_ascii_case(tld))
}

/// "logo@2x.png", "hero@3x.jpg": file names, not addresses.
fn file_extension(tld: &str) -> bool {
    const EXTENSIONS: &[&str] = &[
        "png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "ico", "tif", "tiff", "heic", "avif",
        "pdf", "js", "css", "html", "htm", "json", "txt",
    ];
    EXTENSIONS.iter().any(|t| t.eq_ignore_ascii_case(tld))
}

/// Street suffixes that are seldom anything else.
const STREET_SUFFIXES: &str = "street|st|avenue|ave|av|road|rd|boulevard|blvd|lane|ln|drive|dr|\
    court|ct|place|pl|terrace|ter|way|circle|cir|parkway|pkwy|highway|hwy|square|sq|trail|trl|\
    crescent|cres|alley|aly|plaza|plz|loop|pike|turnpike|tpke|expressway|expy|freeway|fwy|\
    causeway|cswy|bypass|byp";

/// Street suffixes that are everyday words too ("Park", "View", "Run"): taken only in a
/// capitalised name ("Fox Hollow", "Maple Ridge") or before a unit or a city.
const PLACE_SUFFIXES: &str = "ridge|rdg|crossing|xing|point|pt|run|path|heights|hts|grove|grv|\
    commons|cmns|cove|cv|bend|bnd|pass|walk|row|mews|green|park|hill|hills|hollow|holw|glen|gln|\
    landing|lndg|meadow|meadows|mdws|view|vw|vista|vis|valley|vly|knoll|knls|estates|gardens|\
    gdns|trace|trce|spur|close|creek|crk|summit|smt";

/// A street line anchored at its house number: the number, name words and a suffix. What may
/// follow (a second suffix, a direction, units, then city, state and ZIP) is read by
/// [`Scan::address_at`]. Name words are checked against everyday words afterwards (the regex
/// crate has no look-ahead).
static STREET: LazyLock<Regex> = LazyLock::new(|| {
    // Name words are words or ordinals ("5th"), never bare numbers, so a street line cannot
    // swallow "3 May 2024. 1275 …" across a sentence.
    let word = r"(?:[a-z][a-z'\-]*|\d{1,3}(?:st|nd|rd|th))";
    Regex::new(&format!(
        r"(?i-u)^\d{{1,6}}(?:-\d{{1,4}})?[a-z]?\s+(?P<name>(?:{word}\.?\s+){{0,5}}?{word}\.?)\s+(?P<suffix>{STREET_SUFFIXES}|{PLACE_SUFFIXES})\b"
    ))
    .expect("street regex")
});

/// What may follow a street's suffix before the city: a second suffix ("Oak Park Ave"), a
/// direction ("NW"), and up to two units ("Apt 16D", "#4", "Bldg 9, Apt 4", "3rd Floor").
static STREET_TAIL: LazyLock<Regex> = LazyLock::new(|| {
    let unit = "apt|apartment|suite|ste|unit|fl|floor|rm|room|bldg|building|lot|spc|space|dept";
    Regex::new(&format!(
        r"(?i-u)^(?P<second>\.?\s+(?:{STREET_SUFFIXES}|{PLACE_SUFFIXES})\b)?(?:\.?\s+(?:ne|nw|se|sw|(?-i:N|S|E|W))\b)?(?P<unit>(?:\.?,?\s*(?:(?:{unit})\b\.?\s*#?\s*|#\s*)[a-z0-9][a-z0-9\-]{{0,5}}\b|\.?,?\s*\d{{1,3}}(?:st|nd|rd|th)\s+(?:fl|floor)\b)){{0,2}}"
    ))
    .expect("street tail regex")
});

/// US state and territory codes, and Canadian province codes.
const REGION_CODES: &[&[u8; 2]] = &[
    b"AL", b"AK", b"AZ", b"AR", b"CA", b"CO", b"CT", b"DE", b"FL", b"GA", b"HI", b"ID", b"IL",
    b"IN", b"IA", b"KS", b"KY", b"LA", b"ME", b"MD", b"MA", b"MI", b"MN", b"MS", b"MO", b"MT",
    b"NE", b"NV", b"NH", b"NJ", b"NM", b"NY", b"NC", b"ND", b"OH", b"OK", b"OR", b"PA", b"RI",
    b"SC", b"SD", b"TN", b"TX", b"UT", b"VT", b"VA", b"WA", b"WV", b"WI", b"WY", b"DC", b"PR",
    b"GU", b"VI", b"AS", b"MP", b"ON", b"QC", b"BC", b"AB", b"MB", b"SK", b"NS", b"NB", b"NL",
    b"PE", b"NT", b"YT", b"NU",
];

/// US state and territory names, and Canadian province names.
const REGION_NAMES: &[&str] = &[
    "Alabama",
    "Alaska",
    "Arizona",
    "Arkansas",
    "California",
    "Colorado",
    "Connecticut",
    "Delaware",
    "District of Columbia",
    "Florida",
    "Georgia",
    "Hawaii",
    "Idaho",
    "Illinois",
    "Indiana",
    "Iowa",
    "Kansas",
    "Kentucky",
    "Louisiana",
    "Maine",
    "Maryland",
    "Massachusetts",
    "Michigan",
    "Minnesota",
    "Mississippi",
    "Missouri",
    "Montana",
    "Nebraska",
    "Nevada",
    "New Hampshire",
    "New Jersey",
    "New Mexico",
    "New York",
    "North Carolina",
    "North Dakota",
    "Ohio",
    "Oklahoma",
    "Oregon",
    "Pennsylvania",
    "Rhode Island",
    "South Carolina",
    "South Dakota",
    "Tennessee",
    "Texas",
    "Utah",
    "Vermont",
    "Virginia",
    "Washington",
    "West Virginia",
    "Wisconsin",
    "Wyoming",
    "Puerto Rico",
    "Guam",
    "Ontario",
    "Quebec",
    "British Columbia",
    "Alberta",
    "Manitoba",
    "Saskatchewan",
    "Nova Scotia",
    "New Brunswick",
];

/// Nouns for goods, shipments and work items, whose numbers are never personal data.
fn product_noun(word: &[u8]) -> bool {
    const NOUNS: &[&[u8]] = &[
        b"part",
        b"parts",
        b"lot",
        b"batch",
        b"serial",
        b"model",
        b"sku",
        b"upc",
        b"ean",
        b"isbn",
        b"imei",
        b"vin",
        b"order",
        b"tracking",
        b"shipment",
        b"parcel",
        b"package",
        b"waybill",
        b"invoice",
        b"catalog",
        b"catalogue",
        b"product",
        b"item",
        b"rma",
        b"ticket",
        b"case",
        b"incident",
        b"reference",
        b"ref",
        b"confirmation",
        b"specimen",
        b"sample",
        b"asset",
        b"kit",
        b"container",
        b"pallet",
        b"firmware",
        b"component",
    ];
    NOUNS.iter().any(|n| n.eq_ignore_ascii_case(word))
}

/// A capitalised word and a colon opening a line or sentence: a speaker's name ("Driver: …").
fn speaker_label(b: &[u8], s: usize, e: usize) -> bool {
    let mut p = s;
    while p > 0 && b[p - 1] == b' ' {
        p -= 1;
    }
    b.get(e) == Some(&b':')
        && b[s].is_ascii_uppercase()
        && (p == 0 || matches!(b[p - 1], b'\n' | b'.' | b'!' | b'?'))
}

/// Words that join clauses: context does not reach across them.
fn conjunction(word: &[u8]) -> bool {
    const WORDS: &[&[u8]] = &[b"and", b"but", b"then", b"while", b"so", b"because"];
    WORDS.iter().any(|w| w.eq_ignore_ascii_case(word))
}

/// A number right before the word at `s` ("1972 (DOB)"): the word is about that number.
fn number_before(b: &[u8], s: usize) -> bool {
    let mut p = s;
    while p > 0 && matches!(b[p - 1], b' ' | b'(' | b'[' | b'-') {
        p -= 1;
    }
    p > 0 && b[p - 1].is_ascii_digit()
}

/// A number within two words after the word ending at `e`, in the same clause ("birth is June
/// 28"): the word is about that number.
fn number_after(b: &[u8], e: usize) -> bool {
    let mut words = 0;
    let mut p = e;
    while p < b.len() && !clause_end(b, p, 0) && b[p] != b':' {
        let c = b[p];
        if c.is_ascii_digit() {
            return true;
        }
        if c.is_ascii_alphabetic() && (p == e || !b[p - 1].is_ascii_alphabetic()) {
            words += 1;
            if words > 2 {
                break;
            }
        }
        p += 1;
    }
    false
}

/// Area 001-899 but 666, group 01-99, serial 0001-9999: the numbers the SSA issues.
fn ssn_valid(area: u32, group: u32, serial: u32) -> bool {
    (1..=899).contains(&area) && area != 666 && group != 0 && serial != 0
}

/// "P/N", "S/N", "M/N": part, serial and model number. `s..e` is the word after the slash.
fn slash_abbreviation(b: &[u8], s: usize, e: usize) -> bool {
    e - s == 1
        && b[s] | 0x20 == b'n'
        && s >= 2
        && b[s - 1] == b'/'
        && matches!(b[s - 2] | 0x20, b'p' | b's' | b'm')
        && (s == 2 || !b[s - 3].is_ascii_alphabetic())
}

/// Words that may sit between a number and the noun naming it: "the lot number is …", "… is
/// my order number".
fn filler(word: &[u8]) -> bool {
    const FILLER: &[&[u8]] = &[
        b"is", b"was", b"the", b"my", b"your", b"our", b"his", b"her", b"their", b"a", b"an",
    ];
    FILLER.iter().any(|f| f.eq_ignore_ascii_case(word))
}

/// "March 14, 1985", "Mar. 14th 1985", "14 March 1985", "the 14th of March, 1985", "March 14",
/// "14-Mar-1985".
static WRITTEN_DATE: LazyLock<Regex> = LazyLock::new(|| {
    let month = "january|february|march|april|may|june|july|august|september|october|november|\
                 december|jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec";
    Regex::new(&format!(
        r"(?i-u)\b(?:(?:{month})\.?(?:\s+|-)(?P<d1>\d{{1,2}})(?:st|nd|rd|th)?(?:,?\s+(?:\d{{4}}|'\d{{2}})|-\d{{4}})?|(?P<d2>\d{{1,2}})(?:st|nd|rd|th)?(?:\s+|-)(?:of\s+)?(?:{month})\.?(?:,?\s+\d{{4}}|-\d{{4}})?)\b"
    ))
    .expect("written date regex")
});

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn starts_with_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.len() >= needle.len() && hay[..needle.len()].eq_ignore_ascii_case(needle)
}

/// The start of the word after the one at `i`.
fn next_word(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_alphanumeric() {
        i += 1;
    }
    while i < b.len() && !b[i].is_ascii_alphanumeric() {
        i += 1;
    }
    i
}

/// A spelled-out "dot" word or a bracketed "at" somewhere in the text.
fn spelled_email_cue(b: &[u8]) -> bool {
    (0..b.len()).any(|i| match b[i] {
        b'[' | b'(' | b'{' => starts_with_ci(&b[i + 1..], b"at"),
        c if c | 0x20 == b'd' => {
            starts_with_ci(&b[i..], b"dot")
                && (i == 0 || !is_word(b[i - 1]))
                && b.get(i + 3).is_none_or(|&c| !is_word(c))
        }
        _ => false,
    })
}

fn has_birth_cue(b: &[u8]) -> bool {
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_alphabetic() {
            i += 1;
            continue;
        }
        let s = i;
        while i < b.len() && b[i].is_ascii_alphabetic() {
            i += 1;
        }
        if matches!(b[s] | 0x20, b'b' | b'd') && is_birth_word(b, s, i) {
            return true;
        }
    }
    false
}

/// Words near a number that say what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cue {
    Version,
    Ip,
    Isbn,
    /// A noun that names the number as a record or product identifier: "order", "part", "lot".
    Identifier,
    Phone,
    /// "number", "no", "#"-like words that take their meaning from the word before.
    Number,
    /// "ID", "code": a number's name that says nothing of what it belongs to.
    Label,
    /// "card", "visa": a payment card's number, whatever its shape.
    Card,
    Ssn,
    Birth,
}

fn cue(word: &[u8]) -> Option<Cue> {
    // "my work line's 0412 345 678"
    let word = word
        .strip_suffix(b"'s")
        .or_else(|| word.strip_suffix(b"'S"))
        .unwrap_or(word);
    let mut buf = [0u8; 12];
    if word.len() > buf.len() {
        return None;
    }
    let w = &mut buf[..word.len()];
    w.copy_from_slice(word);
    w.make_ascii_lowercase();
    Some(match &*w {
        b"version" | b"versions" | b"ver" | b"v" | b"release" | b"releases" | b"rel" | b"build"
        | b"builds" | b"firmware" | b"fw" | b"revision" | b"rev" | b"patch" | b"hotfix"
        | b"update" | b"updates" | b"updated" | b"upgrade" | b"upgraded" | b"downgraded"
        | b"ios" | b"android" | b"macos" | b"sdk" | b"bios" | b"kernel" | b"driver"
        | b"package" | b"pkg" | b"plugin" | b"library" | b"module" | b"edition" | b"rc"
        | b"beta" | b"alpha" | b"nightly" | b"snapshot" | b"milestone" | b"section" | b"sec"
        | b"chapter" | b"clause" | b"paragraph" | b"figure" | b"fig" | b"table" | b"appendix"
        | b"step" | b"rule" | b"article" => Cue::Version,
        b"ip" | b"ipv" | b"ips" | b"address" | b"addr" | b"host" | b"hostname" | b"server"
        | b"gateway" | b"dns" | b"router" | b"ping" | b"subnet" | b"vpn" | b"proxy" | b"from"
        | b"connect" | b"connecting" | b"connected" | b"login" | b"logged" | b"device"
        | b"client" | b"origin" | b"source" | b"src" | b"dst" | b"remote" | b"peer" => Cue::Ip,
        b"isbn" | b"issn" => Cue::Isbn,
        b"order" | b"orders" | b"ticket" | b"tickets" | b"case" | b"incident" | b"tracking"
        | b"shipment" | b"parcel" | b"waybill" | b"consignment" | b"invoice" | b"inv"
        | b"confirmation" | b"conf" | b"ref" | b"reference" | b"lot" | b"lots" | b"serial"
        | b"sku" | b"upc" | b"ean" | b"imei" | b"meid" | b"iccid" | b"vin" | b"account"
        | b"acct" | b"claim" | b"policy" | b"member" | b"membership" | b"booking"
        | b"reservation" | b"transaction" | b"txn" | b"receipt" | b"po" | b"model" | b"part"
        | b"parts" | b"batch" | b"pin" | b"zip" | b"postcode" | b"room" | b"flight" | b"seat"
        | b"gate" | b"item" | b"items" | b"catalog" | b"catalogue" | b"product" | b"record"
        | b"mrn" | b"npi" | b"rma" | b"job" | b"document" | b"doc" | b"docket" | b"permit"
        | b"license" | b"licence" | b"registration" | b"routing" | b"employee" | b"student"
        | b"voucher" | b"coupon" | b"promo" | b"certificate" | b"contract" | b"project"
        | b"request" | b"req" | b"specimen" | b"sample" | b"accession" | b"asset" | b"kit"
        | b"container" | b"pallet" => Cue::Identifier,
        b"call" | b"calling" | b"called" | b"calls" | b"callback" | b"phone" | b"phones"
        | b"phoned" | b"cell" | b"cellular" | b"mobile" | b"text" | b"texting" | b"txt"
        | b"tel" | b"telephone" | b"fax" | b"dial" | b"reach" | b"reachable" | b"contact"
        | b"whatsapp" | b"viber" | b"wechat" | b"sms" | b"landline" | b"line" | b"hotline"
        | b"helpline" | b"ph" | b"cellphone" | b"voicemail" | b"ring" | b"mob" | b"digits"
        | b"pager" | b"home" => Cue::Phone,
        b"card" | b"cards" | b"visa" | b"mastercard" | b"amex" | b"discover" | b"cc" | b"debit"
        | b"credit" => Cue::Card,
        b"number" | b"numbers" | b"no" | b"nos" | b"num" | b"nr" | b"nbr" => Cue::Number,
        b"id" | b"ids" | b"code" | b"codes" => Cue::Label,
        b"ssn" | b"ssns" | b"social" | b"soc" | b"ss" | b"tin" | b"itin" | b"taxpayer" => Cue::Ssn,
        b"born" | b"birth" | b"birthday" | b"birthdays" | b"birthdate" | b"dob" | b"bday" => {
            Cue::Birth
        }
        _ => return None,
    })
}

/// A birth word, including the abbreviations "b." ("b. 3/14/1985"), "D.O.B" and "b-day".
fn is_birth_word(b: &[u8], s: usize, e: usize) -> bool {
    if e - s == 1 && b[s] | 0x20 == b'b' {
        return matches!(b.get(e), Some(b'.'))
            || (s > 0 && b[s - 1] == b'.')
            || starts_with_ci(&b[e..], b"-day");
    }
    cue(&b[s..e]) == Some(Cue::Birth)
}

/// Whether the '.' at `i` ends a sentence rather than an abbreviation ("b.", "v.", "St.", "no.").
fn sentence_dot(b: &[u8], i: usize) -> bool {
    if b.get(i + 1).is_some_and(|c| !c.is_ascii_whitespace()) {
        return false;
    }
    let mut k = i;
    while k > 0 && b[k - 1].is_ascii_alphabetic() {
        k -= 1;
    }
    let word = i - k;
    word == 0 || word > 3
}

/// Context never reaches across a sentence or clause end, except through a question when asked
/// to ("Can you confirm your DOB? 03/14/1985").
fn clause_end(b: &[u8], i: usize, stops: u8) -> bool {
    match b[i] {
        b'!' | b';' | b'\n' | b'|' => true,
        b'?' => stops & PAST_QUESTION == 0,
        b',' => stops & STOP_COMMA != 0,
        b'.' => sentence_dot(b, i),
        c => stops & STOP_DIGITS != 0 && c.is_ascii_digit(),
    }
}

/// Another number ends the context: the words before it describe that one.
const STOP_DIGITS: u8 = 1;
const STOP_COMMA: u8 = 2;
const PAST_QUESTION: u8 = 4;

/// "that's", "line's", "o'clock": an apostrophe between letters keeps a word whole.
fn inner_apostrophe(b: &[u8], i: usize) -> bool {
    b[i] == b'\''
        && i > 0
        && b[i - 1].is_ascii_alphabetic()
        && b.get(i + 1).is_some_and(u8::is_ascii_alphabetic)
}

/// The alphabetic words before `pos`, nearest first, at most `left` of them.
struct PrevWords<'a> {
    b: &'a [u8],
    pos: usize,
    left: usize,
    stops: u8,
    passed: usize,
}

impl<'a> PrevWords<'a> {
    fn new(b: &'a [u8], pos: usize, left: usize, stops: u8) -> Self {
        PrevWords {
            b,
            pos,
            left,
            stops,
            passed: 0,
        }
    }
}

/// A colon right after a word, once past a word that says something: the end of a speaker's
/// name or a form label ("Patient: I got 000-12-3456", "Customer: firmware 1.2.3.4"), whose
/// words describe something else. The number's own label is still read, "SSN: 123-45-6789" as
/// "Birthdate: the 14th of May".
fn label_colon(b: &[u8], i: usize, passed: usize) -> bool {
    passed >= 1 && b[i] == b':' && i > 0 && b[i - 1].is_ascii_alphabetic()
}

impl Iterator for PrevWords<'_> {
    type Item = (usize, usize);

    fn next(&mut self) -> Option<(usize, usize)> {
        if self.left == 0 {
            return None;
        }
        let b = self.b;
        let mut p = self.pos;
        loop {
            if p == 0 {
                self.left = 0;
                return None;
            }
            let c = b[p - 1];
            if c.is_ascii_alphabetic() {
                break;
            }
            if clause_end(b, p - 1, self.stops) || label_colon(b, p - 1, self.passed) {
                self.left = 0;
                return None;
            }
            p -= 1;
        }
        let end = p;
        while p > 0 && (b[p - 1].is_ascii_alphabetic() || inner_apostrophe(b, p - 1)) {
            p -= 1;
        }
        self.pos = p;
        self.left -= 1;
        self.passed += usize::from(!filler(&b[p..end]));
        Some((p, end))
    }
}

/// The alphabetic words after `pos`, nearest first, at most `left` of them.
struct NextWords<'a> {
    b: &'a [u8],
    pos: usize,
    left: usize,
    stops: u8,
}

impl<'a> NextWords<'a> {
    fn new(b: &'a [u8], pos: usize, left: usize, stops: u8) -> Self {
        NextWords {
            b,
            pos,
            left,
            stops,
        }
    }
}

impl Iterator for NextWords<'_> {
    type Item = (usize, usize);

    fn next(&mut self) -> Option<(usize, usize)> {
        if self.left == 0 {
            return None;
        }
        let b = self.b;
        let mut p = self.pos;
        loop {
            if p >= b.len() || clause_end(b, p, self.stops) {
                self.left = 0;
                return None;
            }
            if b[p].is_ascii_alphabetic() {
                break;
            }
            p += 1;
        }
        let start = p;
        while p < b.len() && (b[p].is_ascii_alphabetic() || inner_apostrophe(b, p)) {
            p += 1;
        }
        // "… 000-12-3456 Agent: my SSN is …": a word that ends in a colon opens a new field or
        // turn, and nothing after it is about this number.
        if b.get(p) == Some(&b':') {
            self.left = 0;
            return None;
        }
        self.pos = p;
        self.left -= 1;
        Some((start, p))
    }
}

const MAX_GROUPS: usize = 12;

/// What joins two digit groups. `Open` means the next group is parenthesised (" (" or "("),
/// `Close` that the previous one was (")", ") ", ")-").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sep {
    Dash,
    Dot,
    Slash,
    Space,
    Open,
    Close,
}

/// A run of digit groups joined by single separators.
struct Chunk {
    start: usize,
    end: usize,
    plus: bool,
    open0: bool,
    n: usize,
    groups: [(usize, usize); MAX_GROUPS],
    /// `seps[i]` joins group `i` and group `i + 1`.
    seps: [Sep; MAX_GROUPS],
}

impl Chunk {
    /// `start` is a digit, a '+' or '(' before one, or "(+" before one ("(+91) 98765 43210").
    fn parse(b: &[u8], start: usize) -> Chunk {
        let open0 = b[start] == b'(';
        let mut c = Chunk {
            start,
            end: start,
            plus: b[start + usize::from(open0)] == b'+',
            open0,
            n: 0,
            groups: [(0, 0); MAX_GROUPS],
            seps: [Sep::Space; MAX_GROUPS],
        };
        let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
        let mut p = start + usize::from(c.plus) + usize::from(c.open0);
        let mut open = c.open0;
        loop {
            let gs = p;
            while digit(p) {
                p += 1;
            }
            c.groups[c.n] = (gs, p);
            c.n += 1;
            if c.n == 1 && c.open0 && b.get(p) != Some(&b')') {
                // "(123-45-6789)", "(+91 98765 43210)": the parenthesis holds the whole item, not
                // an area code, and is no part of it.
                c.open0 = false;
                c.start += 1;
                open = false;
            }
            if c.n == MAX_GROUPS {
                break;
            }
            let (sep, advance) = match b.get(p) {
                Some(b')') if open => {
                    if digit(p + 1) {
                        (Sep::Close, 1)
                    } else if matches!(b.get(p + 1), Some(b' ' | b'-' | b'.')) && digit(p + 2) {
                        (Sep::Close, 2)
                    } else {
                        break;
                    }
                }
                Some(b'-') if digit(p + 1) => (Sep::Dash, 1),
                Some(b'.') if digit(p + 1) => (Sep::Dot, 1),
                Some(b'/') if digit(p + 1) => (Sep::Slash, 1),
                Some(b' ') if digit(p + 1) => (Sep::Space, 1),
                // "555 - 123 - 4567"
                Some(b' ')
                    if b.get(p + 1) == Some(&b'-')
                        && b.get(p + 2) == Some(&b' ')
                        && digit(p + 3) =>
                {
                    (Sep::Dash, 3)
                }
                Some(b' ') if b.get(p + 1) == Some(&b'(') && digit(p + 2) => (Sep::Open, 2),
                Some(b'(') if digit(p + 1) => (Sep::Open, 1),
                _ => break,
            };
            open = sep == Sep::Open;
            c.seps[c.n - 1] = sep;
            p += advance;
        }
        c.end = p;
        c
    }
}

/// Groups `a..z` of a chunk, judged as one candidate item.
struct Window<'c> {
    c: &'c Chunk,
    a: usize,
    z: usize,
}

impl Window<'_> {
    fn n(&self) -> usize {
        self.z - self.a
    }
    fn group(&self, i: usize) -> (usize, usize) {
        self.c.groups[self.a + i]
    }
    fn len(&self, i: usize) -> usize {
        let (s, e) = self.group(i);
        e - s
    }
    fn sep(&self, i: usize) -> Sep {
        self.c.seps[self.a + i]
    }
    fn seps(&self) -> impl Iterator<Item = Sep> + '_ {
        (0..self.n() - 1).map(|i| self.sep(i))
    }
    fn uniform(&self, allowed: &[Sep]) -> bool {
        let first = if self.n() > 1 {
            self.sep(0)
        } else {
            return true;
        };
        allowed.contains(&first) && self.seps().all(|s| s == first)
    }
    fn plus(&self) -> bool {
        self.a == 0 && self.c.plus
    }
    fn open(&self, i: usize) -> bool {
        let g = self.a + i;
        if g == 0 {
            self.c.open0
        } else {
            self.c.seps[g - 1] == Sep::Open
        }
    }
    fn start(&self) -> usize {
        if self.a == 0 {
            self.c.start
        } else if self.c.seps[self.a - 1] == Sep::Open {
            self.c.groups[self.a].0 - 1
        } else {
            self.c.groups[self.a].0
        }
    }
    fn end(&self) -> usize {
        self.group(self.n() - 1).1
    }
}

fn value(b: &[u8], (s, e): (usize, usize)) -> u32 {
    if e - s > 9 {
        return u32::MAX;
    }
    b[s..e]
        .iter()
        .fold(0, |acc, &c| acc * 10 + u32::from(c - b'0'))
}

struct Scan<'a> {
    text: &'a str,
    b: &'a [u8],
    hits: Vec<Hit>,
    first_only: bool,
    field: Option<Cue>,
}

impl Scan<'_> {
    fn done(&self) -> bool {
        self.first_only && !self.hits.is_empty()
    }

    fn push(&mut self, start: usize, end: usize, kind: PiiKind) {
        self.hits.push(Hit { start, end, kind });
    }

    fn emails(&mut self) {
        for m in EMAIL.find_iter(self.text) {
            let tld = m.as_str().rsplit('.').next().unwrap_or_default();
            if file_extension(tld) {
                continue;
            }
            self.push(m.start(), m.end(), PiiKind::Email);
            if self.done() {
                return;
            }
        }
    }

    fn spelled_emails(&mut self) {
        let mut at = 0;
        while let Some(caps) = SPELLED_EMAIL.captures_at(self.text, at) {
            let (Some(m), Some(tld)) = (caps.get(0), caps.name("tld")) else {
                break;
            };
            let s = m.as_str().as_bytes();
            let bracketed = s.iter().any(|c| matches!(c, b'[' | b'(' | b'{'));
            // "jane dot doe at studio dot photography": two spelled dots say it as well as a
            // known top-level domain does.
            let spelled_dots = s
                .windows(5)
                .filter(|w| w.eq_ignore_ascii_case(b" dot "))
                .count();
            // "mei+clinic at fastmail dot fm": a local part with the marks of one.
            let local = s
                .iter()
                .take_while(|c| !c.is_ascii_whitespace() && !matches!(c, b'[' | b'(' | b'{'))
                .any(|c| matches!(c, b'.' | b'_' | b'+' | b'-' | b'0'..=b'9'));
            if bracketed
                || spelled_dots >= 2
                || (spelled_dots == 1 && (local || common_tld(tld.as_str())))
            {
                self.push(m.start(), m.end(), PiiKind::Email);
                if self.done() {
                    return;
                }
                at = m.end();
            } else {
                // "email me at jane dot doe at example dot com" first matches "me at jane dot
                // doe"; the address may start at a later word of the rejected match.
                at = next_word(self.b, m.start());
            }
        }
    }

    fn numbers(&mut self) {
        let b = self.b;
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            let digit_at = |j: usize| b.get(j).is_some_and(u8::is_ascii_digit);
            let opener = (matches!(c, b'+' | b'(') && digit_at(i + 1))
                || (c == b'(' && b.get(i + 1) == Some(&b'+') && digit_at(i + 2));
            if !c.is_ascii_digit() && !opener {
                i += 1;
                continue;
            }
            if i > 0 && glued(b, i) {
                i = skip_token(b, i);
                continue;
            }
            let chunk = Chunk::parse(b, i);
            self.classify(&chunk);
            if self.done() {
                return;
            }
            self.addresses(&chunk);
            if self.done() {
                return;
            }
            i = chunk.end.max(i + 1);
        }
    }

    /// Tries every window of the chunk that starts and ends at a space (or the chunk's ends),
    /// earliest start and longest window first, so "call 555 123 4567 2 times" still finds the
    /// phone while "555-1234-88" is judged whole.
    fn classify(&mut self, c: &Chunk) {
        let splits = |i: usize| matches!(c.seps[i], Sep::Space | Sep::Open);
        let mut a = 0;
        while a < c.n {
            if a > 0 && !splits(a - 1) {
                a += 1;
                continue;
            }
            let mut found = None;
            for z in (a + 1..=c.n).rev() {
                if z < c.n && !splits(z - 1) {
                    continue;
                }
                if let Some(hit) = self.window(&Window { c, a, z }) {
                    found = Some((hit, z));
                    break;
                }
            }
            match found {
                Some((hit, z)) => {
                    self.hits.push(hit);
                    if self.done() {
                        return;
                    }
                    a = z;
                }
                None => a += 1,
            }
        }
    }

    fn window(&self, w: &Window<'_>) -> Option<Hit> {
        let b = self.b;
        let (start, end) = (w.start(), w.end());
        let digits: usize = (0..w.n()).map(|i| w.len(i)).sum();
        let parens = (0..w.n()).any(|i| w.open(i)) || w.seps().any(|s| s == Sep::Close);
        let glued_tail = b.get(end).is_some_and(|&c| is_word(c));
        if glued_tail && b.get(end) == Some(&b'T') && b.get(end + 1).is_some_and(u8::is_ascii_digit)
        {
            // An ISO timestamp: only its date part can be personal ("1985-03-14T00:00:00Z").
            let dob = !w.plus()
                && !parens
                && w.n() == 3
                && date_shape(b, w)
                && self.birth_context(start, end);
            return dob.then_some(Hit {
                start,
                end,
                kind: PiiKind::DateOfBirth,
            });
        }
        if !w.plus() && !parens && !glued_tail {
            if let Some(kind) = self.plain_kind(w, digits) {
                return Some(Hit { start, end, kind });
            }
            if w.n() == 3 && date_shape(b, w) {
                return None;
            }
        }
        self.phone_end(w, digits).map(|end| Hit {
            start,
            end,
            kind: PiiKind::Phone,
        })
    }

    /// The kinds that never carry a '+' or parentheses.
    fn plain_kind(&self, w: &Window<'_>, digits: usize) -> Option<PiiKind> {
        let b = self.b;
        let n = w.n();
        let start = w.start();
        if self.ipv4(w) {
            return Some(PiiKind::Ipv4);
        }
        if n == 3 && date_shape(b, w) {
            return self
                .birth_context(start, w.end())
                .then_some(PiiKind::DateOfBirth);
        }
        if self.ssn(w, digits) {
            return Some(PiiKind::Ssn);
        }
        if (13..=19).contains(&digits)
            && matches!(b[w.group(0).0], b'2'..=b'6')
            && card_shape(w)
            && luhn(b[start..w.end()].iter().copied().filter(u8::is_ascii_digit))
            && !self.any_cue(start, 3, Cue::Isbn)
            // "IMEI 356938035643809", "order #4111111111111111": a tenth of random numbers
            // pass the Luhn check.
            && !self.names_identifier(start, w.end())
        {
            return Some(PiiKind::CreditCard);
        }
        None
    }

    /// 3-2-4 digits ("123-45-6789", "123 45 6789") are an SSN unless the words next to them name
    /// them as something else ("part number", "lot", "batch") or no SSN can have those digits
    /// (area 000, 666 or 9xx, group 00, serial 0000) and no SSN word is near. Nine bare digits
    /// are one only next to an SSN word.
    fn ssn(&self, w: &Window<'_>, digits: usize) -> bool {
        let b = self.b;
        let grouped = w.n() == 3
            && (w.len(0), w.len(1), w.len(2)) == (3, 2, 4)
            && w.uniform(&[Sep::Dash, Sep::Space, Sep::Dot]);
        let bare = w.n() == 1 && digits == 9;
        if !grouped && !bare {
            return false;
        }
        let (start, end) = (w.start(), w.end());
        if self.names_identifier(start, end) {
            return false;
        }
        if self.ssn_context(start, end) {
            return true;
        }
        grouped
            && !self.product_context(start)
            && ssn_valid(
                value(b, w.group(0)),
                value(b, w.group(1)),
                value(b, w.group(2)),
            )
    }

    /// An SSN word among the few words before the number or right after it ("… is my social"),
    /// without crossing another number or a sentence end.
    fn ssn_context(&self, start: usize, end: usize) -> bool {
        let b = self.b;
        let is_ssn = |(s, e): (usize, usize)| cue(&b[s..e]) == Some(Cue::Ssn);
        self.field == Some(Cue::Ssn)
            || PrevWords::new(b, start, 6, STOP_DIGITS | PAST_QUESTION).any(is_ssn)
            || NextWords::new(b, end, 4, STOP_DIGITS).any(is_ssn)
    }

    /// Whether the words right next to a number name it as a record or product identifier:
    /// "part number 123-45-6789", "lot #…", "order no. …", "tracking ID: …", "P/N …", or just
    /// after it, "… (lot number)". Only adjacent words count: in "update my account to
    /// 555-123-4567" the account is not what the number is.
    fn names_identifier(&self, start: usize, end: usize) -> bool {
        let b = self.b;
        for (s, e) in PrevWords::new(b, start, 3, STOP_DIGITS) {
            match cue(&b[s..e]) {
                Some(Cue::Identifier | Cue::Isbn) => return true,
                // "order number", "tracking ID", "the lot number is": the word before decides.
                Some(Cue::Number | Cue::Label) => {}
                _ if filler(&b[s..e]) => {}
                _ => return slash_abbreviation(b, s, e),
            }
        }
        let mut after = NextWords::new(b, end, 4, STOP_DIGITS);
        while let Some((s, e)) = after.next() {
            if filler(&b[s..e]) {
                continue;
            }
            if !matches!(cue(&b[s..e]), Some(Cue::Identifier | Cue::Isbn)) {
                return false;
            }
            // "(lot number)", "is the part no.", "… batch." — not "is the order desk".
            return after
                .next()
                .is_none_or(|(s, e)| matches!(cue(&b[s..e]), Some(Cue::Number | Cue::Label)));
        }
        false
    }

    /// Whether the sentence names a product's or shipment's number before it gets to this one,
    /// with no SSN or phone word nearer: "the part number for the valve is 123-45-6789", "the
    /// tracking # on the box reads …". Farther than [`Scan::names_identifier`] looks, so only
    /// for nouns that never name personal data.
    fn product_context(&self, start: usize) -> bool {
        let b = self.b;
        // The word after the one at hand: "part number", "tracking #", "lot no." name a number;
        // "ticket update:" and "case note:" head a message.
        let mut next: Option<(usize, usize)> = None;
        for (s, e) in PrevWords::new(b, start, 8, STOP_DIGITS) {
            let word = &b[s..e];
            if conjunction(word) {
                return false;
            }
            match cue(word) {
                Some(Cue::Ssn | Cue::Phone | Cue::Birth) => return false,
                _ if product_noun(word) => {
                    let named = next.is_some_and(|(s, e)| {
                        matches!(cue(&b[s..e]), Some(Cue::Number | Cue::Label))
                    }) || b[e..].trim_ascii_start().starts_with(b"#");
                    if named {
                        return true;
                    }
                }
                _ => {}
            }
            next = Some((s, e));
        }
        false
    }

    fn ipv4(&self, w: &Window<'_>) -> bool {
        let b = self.b;
        let n = w.n();
        let cidr = n == 5 && w.sep(3) == Sep::Slash && w.len(4) <= 2 && value(b, w.group(4)) <= 32;
        if !(n == 4 || cidr) || !(0..3).all(|i| w.sep(i) == Sep::Dot) {
            return false;
        }
        let octets_ok = (0..4).all(|i| {
            let (s, e) = w.group(i);
            e - s <= 3 && (e - s == 1 || b[s] != b'0') && value(b, (s, e)) <= 255
        });
        octets_ok && !self.version_context(w.start(), w.end())
    }

    /// Whether a dotted quad is a version ("version 10.0.0.1", "the version is now 2.1.0.7",
    /// "the 4.12.0.3 update"): the nearest of a version word and a network word in the few words
    /// before it decides, and failing both, a version word right after it.
    fn version_context(&self, start: usize, end: usize) -> bool {
        let b = self.b;
        let kind = |(s, e): (usize, usize)| {
            // "Driver: 10.0.0.5" is a delivery driver speaking, not a driver's version.
            if b[s..e].eq_ignore_ascii_case(b"driver") && speaker_label(b, s, e) {
                return None;
            }
            cue(&b[s..e]).filter(|c| matches!(c, Cue::Version | Cue::Ip))
        };
        match PrevWords::new(b, start, 3, STOP_COMMA | STOP_DIGITS).find_map(kind) {
            Some(c) => c == Cue::Version,
            None => NextWords::new(b, end, 2, STOP_COMMA | STOP_DIGITS)
                .find_map(kind)
                .is_some_and(|c| c == Cue::Version),
        }
    }

    /// The end of the phone number in the window (extension included), if it is one.
    fn phone_end(&self, w: &Window<'_>, digits: usize) -> Option<usize> {
        let b = self.b;
        let n = w.n();
        for i in 0..n {
            let closes = i + 1 < n && w.sep(i) == Sep::Close;
            if w.open(i) != closes {
                return None;
            }
        }
        // A slash only after an area code: "030/12345678", "555/123-4567".
        if w.seps().skip(1).any(|s| s == Sep::Slash) {
            return None;
        }
        let end = w.end();
        if let Some(&c) = b.get(end)
            && is_word(c)
            && !(c | 0x20 == b'x' && b.get(end + 1).is_some_and(u8::is_ascii_digit))
        {
            return None;
        }
        // "… 555-1234 10:30", "… 0958 00:1A:2B…": a group that goes on with a colon starts a time
        // or a MAC address, not the end of a phone number.
        if b.get(end) == Some(&b':') && b.get(end + 1).is_some_and(u8::is_ascii_alphanumeric) {
            return None;
        }
        // The words around the whole run are the context, also for a part of it: in
        // "UPC 0 12345 67890 5" the UPC names "12345 67890" too.
        let context = w.c.start;
        let whole = w.a == 0 && w.z == w.c.n;
        let ok = match phone_shape(b, w, digits) {
            PhoneShape::International if w.plus() => true,
            PhoneShape::International if whole => !self.names_identifier(context, end),
            // Grouped like a phone number inside a longer run of numbers ("UPC 0 12345 67890 5",
            // "paid 20 4111 1111 1111 1111") it needs a phone word as much as bare digits do;
            // only the North American grouping is distinct enough to stand out of one.
            PhoneShape::National if whole || nanp(b, w) => {
                !self.names_identifier(context, end)
                    && !self.product_context(context)
                    && !self.any_cue(context, 3, Cue::Isbn)
            }
            PhoneShape::International | PhoneShape::National | PhoneShape::Cued => {
                self.phone_cue(context, end) == Some(true)
            }
            PhoneShape::No => false,
        };
        ok.then(|| extension_end(b, end))
    }

    /// `Some(true)` next to a phone word, `Some(false)` next to an identifier word (order, ticket,
    /// ISBN, ID…), judged by the nearest such word before the number, then by the words right
    /// after it ("… is my cell", "… (mobile)"); "number" counts as a phone word unless it is
    /// "order number" and the like.
    fn phone_cue(&self, start: usize, end: usize) -> Option<bool> {
        let b = self.b;
        if letter_label(b, start) {
            return Some(true);
        }
        if self.names_identifier(start, end) {
            return Some(false);
        }
        let mut words = PrevWords::new(b, start, 6, 0);
        let mut nearest = 0;
        while let Some((s, e)) = words.next() {
            nearest += 1;
            match cue(&b[s..e]) {
                Some(Cue::Phone) => return Some(true),
                Some(Cue::Identifier | Cue::Isbn | Cue::Label | Cue::Card) => return Some(false),
                // "my number is", "number:"; further off, "no" is as likely a reply.
                Some(Cue::Number) if nearest <= 3 => {
                    let before = words.next().and_then(|(s, e)| cue(&b[s..e]));
                    return Some(!matches!(
                        before,
                        Some(Cue::Identifier | Cue::Isbn | Cue::Label)
                    ));
                }
                _ => {}
            }
        }
        // After the number "number" is no phone word: "… No worries".
        let after = NextWords::new(b, end, 4, STOP_DIGITS)
            .find_map(|(s, e)| cue(&b[s..e]).filter(|&c| c != Cue::Number));
        match after {
            Some(Cue::Phone) => Some(true),
            Some(Cue::Identifier | Cue::Isbn | Cue::Label) => Some(false),
            _ => (self.field == Some(Cue::Phone)).then_some(true),
        }
    }

    fn any_cue(&self, pos: usize, words: usize, wanted: Cue) -> bool {
        let b = self.b;
        PrevWords::new(b, pos, words, 0).any(|(s, e)| cue(&b[s..e]) == Some(wanted))
    }

    /// A birth word among the few words before the date, or right after it ("… is my birthday"),
    /// without crossing another number, a sentence end or a conjunction ("born in Ohio, and on
    /// 3/14/2024 I moved"), and not one that describes another number: "05-26-1972 (DOB) the
    /// policy renews 1/25/20", "renews 10/1/2020 my date of birth is June 28, 1996".
    fn birth_context(&self, start: usize, end: usize) -> bool {
        let b = self.b;
        let before = PrevWords::new(b, start, 6, STOP_DIGITS | PAST_QUESTION)
            .take_while(|&(s, e)| !conjunction(&b[s..e]))
            .enumerate()
            .find(|&(_, (s, e))| is_birth_word(b, s, e))
            // "age 36 (DOB 4/3/1988)", "1960 birth date 9-26-02": a birth word right before
            // the date is about it.
            .is_some_and(|(nearest, (s, _))| nearest < 2 || !number_before(b, s));
        let after = || {
            NextWords::new(b, end, 5, STOP_DIGITS)
                .take_while(|&(s, e)| !conjunction(&b[s..e]))
                .enumerate()
                .find(|&(_, (s, e))| is_birth_word(b, s, e))
                // "06-05-1950 (DOB)", "06/26/57 (date of birth)"
                .is_some_and(|(nearest, (_, e))| nearest <= 2 || !number_after(b, e))
        };
        self.field == Some(Cue::Birth) || before || after()
    }

    /// Tries a street line at the chunk's first group ("350 5th Avenue", "12-14 Elm St") and at
    /// its last space-separated group ("… 2 1234 Elm St").
    fn addresses(&mut self, c: &Chunk) {
        let b = self.b;
        let followed_by_word = match b.get(c.end) {
            Some(b' ') => b.get(c.end + 1).is_some_and(u8::is_ascii_alphabetic),
            Some(l) => l.is_ascii_alphabetic(),
            None => false,
        };
        if !followed_by_word {
            return;
        }
        if !c.plus && !c.open0 && self.address_at(c.start) {
            return;
        }
        if c.n >= 2 && c.seps[c.n - 2] == Sep::Space {
            self.address_at(c.groups[c.n - 1].0);
        }
    }

    /// A street address starting at the house number `house`: the street line, then whatever
    /// of unit, city, state and ZIP follows it, and a unit written before it.
    fn address_at(&mut self, house: usize) -> bool {
        let b = self.b;
        let text = &self.text[house..];
        let Some(caps) = STREET.captures(text) else {
            return false;
        };
        let (Some(name), Some(suffix)) = (caps.name("name"), caps.name("suffix")) else {
            return false;
        };
        if !street_name_ok(name.as_str()) {
            return false;
        }
        let mut end = house + suffix.end();
        let tail = STREET_TAIL.captures(&text[suffix.end()..]);
        let (second, unit) = tail.as_ref().map_or((false, false), |t| {
            (t.name("second").is_some(), t.name("unit").is_some())
        });
        end += tail.as_ref().and_then(|t| t.get(0)).map_or(0, |m| m.end());
        let case = Case::of(&text[name.start()..suffix.end()]);
        let locality = locality_end(b, end, case);
        // "Oak Park", "Maple Ridge", "Fox Hollow": a place word is a street only as a proper name
        // or before a unit or a city.
        let place_word = !second && PLACE_SUFFIX.is_match(suffix.as_str());
        if place_word
            && locality.is_none()
            && !unit
            && !capitalised(&text[..suffix.end()])
            && !self.address_cue(house)
        {
            return false;
        }
        if locality.is_none() && !unit && street_as_modifier(b, house, end) {
            return false;
        }
        let end = locality.unwrap_or(end);
        self.push(unit_before(b, house), end, PiiKind::StreetAddress);
        true
    }

    /// Words before a street line that say an address follows: "I live at", "ship to",
    /// "my address is", "moved to".
    fn address_cue(&self, house: usize) -> bool {
        let b = self.b;
        PrevWords::new(b, house, 5, STOP_DIGITS).any(|(s, e)| {
            const CUES: &[&[u8]] = &[
                b"address",
                b"addr",
                b"live",
                b"lives",
                b"living",
                b"reside",
                b"resides",
                b"ship",
                b"shipping",
                b"deliver",
                b"delivery",
                b"mail",
                b"mailing",
                b"send",
                b"moved",
                b"move",
                b"located",
                b"staying",
                b"home",
                b"house",
                b"office",
                b"billing",
                b"place",
            ];
            CUES.iter().any(|c| c.eq_ignore_ascii_case(&b[s..e]))
        })
    }

    fn ipv6(&mut self) {
        let b = self.b;
        let mut i = 0;
        while i < b.len() {
            if b[i] != b':' {
                i += 1;
                continue;
            }
            let mut s = i;
            while s > 0 && (b[s - 1].is_ascii_hexdigit() || b[s - 1] == b':') {
                s -= 1;
            }
            let mut e = i;
            while e < b.len() && (b[e].is_ascii_hexdigit() || matches!(b[e], b':' | b'.')) {
                e += 1;
            }
            while e > s && b[e - 1] == b'.' {
                e -= 1;
            }
            i = e.max(i + 1);
            let bounded = (s == 0 || !is_word(b[s - 1])) && b.get(e).is_none_or(|&c| !is_word(c));
            let hex = b[s..e].iter().filter(|c| c.is_ascii_hexdigit()).count();
            if bounded && hex >= 4 && self.text[s..e].parse::<Ipv6Addr>().is_ok() {
                self.push(s, e, PiiKind::Ipv6);
                if self.done() {
                    return;
                }
            }
        }
    }

    fn written_dates(&mut self) {
        for caps in WRITTEN_DATE.captures_iter(self.text) {
            let Some(m) = caps.get(0) else { continue };
            let day = caps
                .name("d1")
                .or_else(|| caps.name("d2"))
                .map_or(0, |d| value(self.b, (d.start(), d.end())));
            if (1..=31).contains(&day) && self.birth_context(m.start(), m.end()) {
                self.push(m.start(), m.end(), PiiKind::DateOfBirth);
                if self.done() {
                    return;
                }
            }
        }
    }
}

/// A digit run stuck to a word ("v2.10.0.1", "A1C", "PHQ-9", "ORD-555-123-4567") is part of an
/// identifier, not a number of its own.
fn glued(b: &[u8], i: usize) -> bool {
    let p = b[i - 1];
    is_word(p) || (p == b'-' && i >= 2 && b[i - 2].is_ascii_alphanumeric())
}

fn skip_token(b: &[u8], mut i: usize) -> usize {
    // Always moves: the token may start at a '+' or '(' ("ZIP+4").
    i += 1;
    while i < b.len()
        && (is_word(b[i])
            || (matches!(b[i], b'-' | b'.' | b'/' | b':')
                && b.get(i + 1).is_some_and(|&c| is_word(c))))
    {
        i += 1;
    }
    i
}

fn date_shape(b: &[u8], w: &Window<'_>) -> bool {
    if w.n() != 3 || !w.uniform(&[Sep::Slash, Sep::Dash, Sep::Dot]) {
        return false;
    }
    let (v0, v1, v2) = (
        value(b, w.group(0)),
        value(b, w.group(1)),
        value(b, w.group(2)),
    );
    let month_day = |m: u32, d: u32| (1..=12).contains(&m) && (1..=31).contains(&d);
    let either = month_day(v0, v1) || month_day(v1, v0);
    let year = (1900..=2099).contains(&v2);
    match (w.len(0), w.len(1), w.len(2)) {
        (1 | 2, 1 | 2, 4) => year && either,
        (4, 1 | 2, 1 | 2) => (1900..=2099).contains(&v0) && month_day(v1, v2),
        (1 | 2, 1 | 2, 2) => either,
        _ => false,
    }
}

fn card_shape(w: &Window<'_>) -> bool {
    let n = w.n();
    if n == 1 {
        return true;
    }
    if !w.uniform(&[Sep::Space, Sep::Dash]) {
        return false;
    }
    let fours = n >= 4 && (0..n - 1).all(|i| w.len(i) == 4) && (1..=4).contains(&w.len(n - 1));
    // Amex 4-6-5 and Diners 4-6-4.
    let amex = n == 3 && w.len(0) == 4 && w.len(1) == 6 && (4..=5).contains(&w.len(2));
    fours || amex
}

/// 3-3-4, optionally after a "1" trunk code, with the area code optionally in parentheses.
fn nanp(b: &[u8], w: &Window<'_>) -> bool {
    let n = w.n();
    let s = if n == 4 && w.len(0) == 1 && b[w.group(0).0] == b'1' {
        1
    } else if n == 3 {
        0
    } else {
        return false;
    };
    (w.len(s), w.len(s + 1), w.len(s + 2)) == (3, 3, 4) && (0..n).all(|i| i == s || !w.open(i))
}

/// How much a run of digit groups looks like a phone number by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PhoneShape {
    /// A country code says it: "+44 20 7946 0958", "(+91) 98765-43210", "0044 20 7946 0958".
    International,
    /// Grouped as national numbers are written: "(555) 123-4567", "020 7946 0958",
    /// "98765 43210", "01 23 45 67 89", "(11) 91234-5678", "030/12345678".
    National,
    /// A phone number only if a phone word says so: "5551234567", "555-1234", "912 345 678".
    Cued,
    No,
}

fn phone_shape(b: &[u8], w: &Window<'_>, digits: usize) -> PhoneShape {
    let n = w.n();
    if w.plus() {
        return if (8..=15).contains(&digits) && (n == 1 || w.len(0) <= 3) {
            PhoneShape::International
        } else {
            PhoneShape::No
        };
    }
    let (first, _) = w.group(0);
    let trunk = b[first] == b'0';
    // "00" is the international call prefix in most of the world.
    if trunk && w.len(0) >= 2 && b[first + 1] == b'0' {
        return if n >= 2 && (11..=15).contains(&digits) {
            PhoneShape::International
        } else {
            PhoneShape::No
        };
    }
    if nanp(b, w) {
        return PhoneShape::National;
    }
    if n == 1 {
        return if (10..=12).contains(&digits) {
            PhoneShape::Cued
        } else {
            PhoneShape::No
        };
    }
    // "94103-1234" is a ZIP+4.
    let zip4 = n == 2 && w.len(0) == 5 && w.len(1) == 4 && w.sep(0) == Sep::Dash;
    if zip4 || !national_grouping(b, w) || !(7..=12).contains(&digits) {
        return PhoneShape::No;
    }
    // Thousands are grouped in threes ("12 345 678"); so, with a phone word, is "912 345 678".
    // A leading 0 is no amount: "0412 345 678" is a phone number.
    let thousands = !trunk && n >= 3 && (1..n).all(|i| w.len(i) == 3);
    let national = if trunk {
        (10..=12).contains(&digits)
    } else {
        (10..=11).contains(&digits) && w.len(n - 1) >= 4
    };
    if national && !thousands {
        PhoneShape::National
    } else {
        PhoneShape::Cued
    }
}

/// Groups as phone numbers are written: an area code of 2-5 digits first (maybe in parentheses,
/// maybe before a slash), then groups of 2-8 digits joined by spaces, dashes or dots.
fn national_grouping(b: &[u8], w: &Window<'_>) -> bool {
    let n = w.n();
    // India writes its trunk 0 in front of a five-digit group: "098765 43210".
    let area = if b[w.group(0).0] == b'0' {
        2..=6
    } else {
        2..=5
    };
    area.contains(&w.len(0))
        && (1..n).all(|i| (2..=8).contains(&w.len(i)) && !w.open(i))
        && w.seps().enumerate().all(|(i, s)| match s {
            Sep::Space | Sep::Dash | Sep::Dot | Sep::Close => true,
            Sep::Slash => i == 0,
            Sep::Open => false,
        })
}

/// A one-letter label right before the number, as in signatures and contact cards: "M: …",
/// "T. …", "C: …" (mobile, telephone, cell, home, work, office, fax, direct, phone).
fn letter_label(b: &[u8], start: usize) -> bool {
    let mut p = start;
    while p > 0 && b[p - 1] == b' ' {
        p -= 1;
    }
    p >= 2
        && matches!(b[p - 1], b':' | b'.')
        && matches!(
            b[p - 2] | 0x20,
            b'm' | b't' | b'c' | b'h' | b'w' | b'o' | b'f' | b'd' | b'p'
        )
        && (p == 2 || !b[p - 3].is_ascii_alphanumeric())
}

/// Extends a phone number over a following "ext. 12", "extension 3", "x204", "(ext. 5)".
fn extension_end(b: &[u8], end: usize) -> usize {
    let mut q = end;
    if b.get(q) == Some(&b',') {
        q += 1;
    }
    while b.get(q) == Some(&b' ') && q < end + 3 {
        q += 1;
    }
    // "(ext. 12)" is taken with its parentheses.
    let paren = b.get(q) == Some(&b'(');
    q += usize::from(paren);
    let rest = &b[q.min(b.len())..];
    q += if starts_with_ci(rest, b"extension") {
        9
    } else if starts_with_ci(rest, b"ext") {
        3
    } else if rest.first().is_some_and(|c| c | 0x20 == b'x') {
        1
    } else {
        return end;
    };
    if b.get(q) == Some(&b'.') {
        q += 1;
    }
    while matches!(b.get(q), Some(b' ' | b':' | b'#')) && q < end + 16 {
        q += 1;
    }
    let ds = q;
    while b.get(q).is_some_and(u8::is_ascii_digit) {
        q += 1;
    }
    if q == ds || q - ds > 6 || b.get(q).is_some_and(|&c| is_word(c)) {
        return end;
    }
    if paren {
        if b.get(q) != Some(&b')') {
            return end;
        }
        q += 1;
    }
    q
}

/// Whether a suffix is one of [`PLACE_SUFFIXES`].
static PLACE_SUFFIX: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(r"(?i-u)^(?:{PLACE_SUFFIXES})$")).expect("place suffix regex")
});

/// How a street line is written; its city and state are written the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Title,
    Lower,
    Upper,
}

impl Case {
    fn of(street: &str) -> Case {
        let letters = || street.bytes().filter(u8::is_ascii_alphabetic);
        if letters().all(|c| c.is_ascii_lowercase()) {
            Case::Lower
        } else if letters().all(|c| c.is_ascii_uppercase()) {
            Case::Upper
        } else {
            Case::Title
        }
    }

    /// Whether `word` is written in this case, as a name: "Denver", "denver", "DENVER".
    fn fits(self, word: &[u8]) -> bool {
        match self {
            // "O'Fallon", "d'Alene"
            Case::Title => {
                word[0].is_ascii_uppercase()
                    || word.iter().position(|&c| c == b'\'').is_some_and(|i| {
                        i <= 2 && word.get(i + 1).is_some_and(u8::is_ascii_uppercase)
                    })
            }
            Case::Lower => !word.iter().any(u8::is_ascii_uppercase),
            Case::Upper => !word.iter().any(u8::is_ascii_lowercase),
        }
    }
}

/// Every word of the street line starts with a capital or is a number ("12 Fox Hollow").
fn capitalised(line: &str) -> bool {
    line.split_ascii_whitespace()
        .all(|w| w.starts_with(|c: char| c.is_ascii_uppercase() || c.is_ascii_digit()))
}

/// Where the city, state and ZIP after a street line end, if they follow it:
/// ", Springfield, IL 62704", " Apt 16D Springfield IL 62704" (the unit is already read),
/// ", Denver, Colorado", "\nDenver, CO 80202", ", Boise 83702", ", London NW1 6XE". A city alone
/// is taken only after a comma and before the end of its clause (", Denver.").
fn locality_end(b: &[u8], from: usize, case: Case) -> Option<usize> {
    let mut p = from;
    // "Ave., Denver" and "St. Paul" but not "Street. Then …": a dot after an abbreviation.
    if b.get(p) == Some(&b'.') {
        let word = b[..p]
            .iter()
            .rev()
            .take_while(|c| c.is_ascii_alphabetic())
            .count();
        if word > 4 {
            return None;
        }
        p += 1;
    }
    let comma = b.get(p) == Some(&b',');
    p += usize::from(comma);
    let space = b[p..].iter().take_while(|&&c| c == b' ').count();
    let newline = space == 0 && b.get(p) == Some(&b'\n');
    if newline {
        p += 1;
    } else if space == 0 || space > 2 {
        return None;
    } else {
        p += space;
    }

    let mut best = None;
    let mut city_end = None;
    let mut q = p;
    for i in 0..4 {
        let Some(e) = city_word(b, q, case, i == 0) else {
            break;
        };
        city_end = Some(e);
        if let Some(r) = region_end(b, e, case) {
            best = Some(r);
        }
        if b.get(e) == Some(&b' ') && b.get(e + 1).is_some_and(u8::is_ascii_alphabetic) {
            q = e + 1;
        } else {
            break;
        }
    }
    best.or_else(|| {
        // A city alone: "…, Denver." but not "…, Thanks!"
        let e = city_end?;
        let everyday = b[p..e]
            .split(|&c| c == b' ')
            .any(|w| everyday_word(w.strip_suffix(b".").unwrap_or(w)));
        (comma && !newline && !everyday && clause_follows(b, e)).then_some(e)
    })
}

/// A word of a city name at `p`, written in the street's case: "Springfield", "St.",
/// "Winston-Salem", "d'Alene"; inside a name, "of", "de", "la" in lower case.
fn city_word(b: &[u8], p: usize, case: Case, first: bool) -> Option<usize> {
    if !b.get(p)?.is_ascii_alphabetic() {
        return None;
    }
    let mut e = p;
    while e < b.len()
        && (b[e].is_ascii_alphabetic()
            || (matches!(b[e], b'-' | b'\'') && b.get(e + 1).is_some_and(u8::is_ascii_alphabetic)))
    {
        e += 1;
    }
    let word = &b[p..e];
    let connector = !first
        && [&b"of"[..], b"de", b"la", b"le", b"du", b"del", b"d"]
            .iter()
            .any(|c| c.eq_ignore_ascii_case(word));
    // "Long Beach", "little rock": a city may start with an adjective, but in lower case an
    // article, pronoun or preposition is the sentence going on.
    if !(connector || case.fits(word)) || (case == Case::Lower && function_word(word)) {
        return None;
    }
    // "St. Paul", "Ft. Worth", "Mt. Vernon"; any other dot ends a sentence.
    let abbreviation = [&b"st"[..], b"ste", b"ft", b"mt", b"pt"]
        .iter()
        .any(|a| a.eq_ignore_ascii_case(word));
    if abbreviation && b.get(e) == Some(&b'.') && b.get(e + 1) == Some(&b' ') {
        e += 1;
    }
    Some(e)
}

/// Articles, pronouns, prepositions, conjunctions and auxiliaries: no part of a place name.
fn function_word(word: &[u8]) -> bool {
    const WORDS: &[&[u8]] = &[
        b"a",
        b"an",
        b"the",
        b"my",
        b"your",
        b"our",
        b"his",
        b"her",
        b"their",
        b"its",
        b"this",
        b"that",
        b"these",
        b"those",
        b"on",
        b"in",
        b"at",
        b"to",
        b"for",
        b"from",
        b"with",
        b"by",
        b"into",
        b"onto",
        b"and",
        b"or",
        b"but",
        b"so",
        b"is",
        b"are",
        b"was",
        b"were",
        b"be",
        b"been",
        b"am",
        b"i",
        b"you",
        b"we",
        b"they",
        b"he",
        b"she",
        b"it",
        b"me",
        b"us",
        b"them",
        b"if",
        b"as",
        b"then",
        b"than",
        b"when",
        b"where",
        b"until",
        b"till",
        b"near",
        b"please",
        b"pls",
        b"thanks",
        b"today",
        b"tomorrow",
        b"tonight",
        b"now",
    ];
    WORDS.iter().any(|w| w.eq_ignore_ascii_case(word))
}

/// A city's clause ends here: punctuation, a line break, a dash or the end of the text.
fn clause_follows(b: &[u8], e: usize) -> bool {
    match b.get(e) {
        None => true,
        Some(b'.' | b',' | b'!' | b'?' | b';' | b')' | b'\n' | b'"') => true,
        Some(b' ') => matches!(b.get(e + 1), Some(b'-' | b'(' | 0xe2)),
        _ => false,
    }
}

/// The end of what follows a city: " IL", ", Illinois 62704", " 62704-1234", ", ON M5V 2T6",
/// " NW1 6XE", then a trailing ", USA".
fn region_end(b: &[u8], p: usize, case: Case) -> Option<usize> {
    let comma = b.get(p) == Some(&b',');
    let mut q = p + usize::from(comma);
    if b.get(q) != Some(&b' ') {
        return None;
    }
    q += 1;
    let end = if let Some(e) = zip_end(b, q).or_else(|| uk_postcode_end(b, q)) {
        e
    } else {
        let e = region_code_end(b, q, case).or_else(|| region_name_end(b, q, case))?;
        let code = if b.get(e) == Some(&b' ') {
            zip_end(b, e + 1).or_else(|| ca_postcode_end(b, e + 1))
        } else {
            None
        };
        code.unwrap_or(e)
    };
    Some(country_end(b, end))
}

/// "IL", "MN", "ON" in capitals; in an address written in lower case, "il".
fn region_code_end(b: &[u8], q: usize, case: Case) -> Option<usize> {
    let code = b.get(q..q + 2)?;
    if !code.iter().all(u8::is_ascii_alphabetic)
        || b.get(q + 2).is_some_and(u8::is_ascii_alphanumeric)
    {
        return None;
    }
    let upper = [code[0].to_ascii_uppercase(), code[1].to_ascii_uppercase()];
    if !REGION_CODES.contains(&&upper) {
        return None;
    }
    let written_ok = if code.iter().all(u8::is_ascii_uppercase) {
        true
    } else {
        // "denver, co", "denver co 80202", "denver co in the spring": in an address written
        // all in lower case, its state is too.
        case == Case::Lower && code.iter().all(u8::is_ascii_lowercase)
    };
    written_ok.then_some(q + 2)
}

/// "Illinois", "New Mexico", "District of Columbia", in the street's case.
fn region_name_end(b: &[u8], q: usize, case: Case) -> Option<usize> {
    REGION_NAMES
        .iter()
        .filter(|name| {
            let n = name.len();
            b.get(q..q + n)
                .is_some_and(|w| w.eq_ignore_ascii_case(name.as_bytes()))
                && !b.get(q + n).is_some_and(u8::is_ascii_alphanumeric)
                && b[q..q + n]
                    .split(|&c| c == b' ')
                    .all(|w| w == b"of" || case.fits(w))
        })
        .map(|name| q + name.len())
        .max()
}

/// "62704", "62704-1234".
fn zip_end(b: &[u8], q: usize) -> Option<usize> {
    let digits = |from: usize, n: usize| {
        b.get(from..from + n)
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
    };
    if !digits(q, 5) {
        return None;
    }
    let mut e = q + 5;
    if b.get(e) == Some(&b'-') && digits(e + 1, 4) {
        e += 5;
    }
    (!b.get(e).is_some_and(u8::is_ascii_alphanumeric)).then_some(e)
}

/// "NW1 6XE", "SW1A 1AA", "M1 1AE".
fn uk_postcode_end(b: &[u8], q: usize) -> Option<usize> {
    let up = |i: usize| b.get(i).is_some_and(u8::is_ascii_uppercase);
    let dig = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    let mut e = q;
    if !up(e) {
        return None;
    }
    e += 1;
    if up(e) {
        e += 1;
    }
    if !dig(e) {
        return None;
    }
    e += 1;
    if up(e) || dig(e) {
        e += 1;
    }
    if b.get(e) == Some(&b' ') {
        e += 1;
    }
    (dig(e) && up(e + 1) && up(e + 2) && !b.get(e + 3).is_some_and(u8::is_ascii_alphanumeric))
        .then_some(e + 3)
}

/// "M5V 2T6".
fn ca_postcode_end(b: &[u8], q: usize) -> Option<usize> {
    let up = |i: usize| b.get(i).is_some_and(u8::is_ascii_uppercase);
    let dig = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    if !(up(q) && dig(q + 1) && up(q + 2)) {
        return None;
    }
    let r = q + 3 + usize::from(b.get(q + 3) == Some(&b' '));
    (dig(r) && up(r + 1) && dig(r + 2) && !b.get(r + 3).is_some_and(u8::is_ascii_alphanumeric))
        .then_some(r + 3)
}

/// Past a trailing ", USA", " USA", ", United States", ", Canada".
fn country_end(b: &[u8], e: usize) -> usize {
    for country in [
        &b", USA"[..],
        b" USA",
        b", US",
        b", United States",
        b", Canada",
    ] {
        let end = e + country.len();
        if b.get(e..end)
            .is_some_and(|w| w.eq_ignore_ascii_case(country))
            && !b.get(end).is_some_and(u8::is_ascii_alphanumeric)
        {
            return end;
        }
    }
    e
}

/// "we have 3 Main St locations", "2 Elm Street stores": a small count, then a street's name
/// used to describe the plural noun that closes the clause.
fn street_as_modifier(b: &[u8], house: usize, end: usize) -> bool {
    let count = b[house..].iter().take_while(|c| c.is_ascii_digit()).count();
    if count > 2 || b.get(end) != Some(&b' ') {
        return false;
    }
    let s = end + 1;
    let e = s + b[s..].iter().take_while(|c| c.is_ascii_lowercase()).count();
    let noun = &b[s..e];
    let plural = noun.len() >= 4
        && noun.ends_with(b"s")
        && !noun.ends_with(b"ss")
        && !noun.ends_with(b"us")
        && !noun.ends_with(b"is");
    let closes = clause_follows(b, e)
        || b.get(e) == Some(&b' ')
            && NextWords::new(b, e, 1, 0).next().is_some_and(|(s, e)| {
                matches!(&b[s..e], b"and" | b"in" | b"on" | b"near" | b"downtown")
            });
    plural && closes
}

/// Where a unit written before the house number starts ("Apt 5B, 42 Oak Ave", "Unit #12 300
/// Main St", "#4, 9 Elm St"), or `house` when there is none.
fn unit_before(b: &[u8], house: usize) -> usize {
    let mut p = house;
    while p > 0 && b[p - 1] == b' ' {
        p -= 1;
    }
    if p > 0 && b[p - 1] == b',' {
        p -= 1;
    }
    while p > 0 && b[p - 1] == b' ' {
        p -= 1;
    }
    let value_end = p;
    while p > 0 && (b[p - 1].is_ascii_alphanumeric() || b[p - 1] == b'-') && value_end - p < 6 {
        p -= 1;
    }
    let value = &b[p..value_end];
    let value_ok = !value.is_empty()
        && (value.iter().any(u8::is_ascii_digit) || value.len() == 1)
        && (p == 0 || !b[p - 1].is_ascii_alphanumeric());
    if !value_ok || p == house {
        return house;
    }
    // "#12", "Apt #12", "Apt. 12"
    let hash = p > 0 && b[p - 1] == b'#';
    p -= usize::from(hash);
    let value_start = p;
    while p > 0 && b[p - 1] == b' ' {
        p -= 1;
    }
    if p > 0 && b[p - 1] == b'.' {
        p -= 1;
    }
    let word_end = p;
    while p > 0 && b[p - 1].is_ascii_alphabetic() {
        p -= 1;
    }
    let unit = [
        &b"apt"[..],
        b"apartment",
        b"unit",
        b"suite",
        b"ste",
        b"bldg",
        b"fl",
        b"floor",
    ]
    .iter()
    .any(|u| u.eq_ignore_ascii_case(&b[p..word_end]));
    if unit && (p == 0 || !b[p - 1].is_ascii_alphanumeric()) {
        p
    } else if hash {
        value_start
    } else {
        house
    }
}

/// Street names are proper names; everyday words in the "name" mean the number was a quantity
/// ("3 blocks down the road", "2 big road trips").
fn street_name_ok(name: &str) -> bool {
    name.split_ascii_whitespace().all(|word| {
        // "Ohio." is the end of a sentence; "W." and "St." are abbreviations.
        if word.len() > 4 && word.ends_with('.') {
            return false;
        }
        !everyday_word(word.trim_end_matches('.').as_bytes())
    })
}

/// Words that are no part of a street or city name: articles, pronouns, prepositions, units,
/// quantities, courtesies.
fn everyday_word(word: &[u8]) -> bool {
    let mut buf = [0u8; 10];
    if word.len() > buf.len() {
        return false;
    }
    let w = &mut buf[..word.len()];
    w.copy_from_slice(word);
    w.make_ascii_lowercase();
    matches!(
        &*w,
        b"a" | b"an"
            | b"the"
            | b"my"
            | b"your"
            | b"our"
            | b"his"
            | b"her"
            | b"their"
            | b"its"
            | b"this"
            | b"that"
            | b"these"
            | b"those"
            | b"on"
            | b"in"
            | b"at"
            | b"to"
            | b"of"
            | b"for"
            | b"from"
            | b"with"
            | b"by"
            | b"into"
            | b"onto"
            | b"down"
            | b"up"
            | b"over"
            | b"under"
            | b"across"
            | b"along"
            | b"through"
            | b"past"
            | b"around"
            | b"near"
            | b"off"
            | b"and"
            | b"or"
            | b"but"
            | b"so"
            | b"is"
            | b"are"
            | b"was"
            | b"were"
            | b"be"
            | b"been"
            | b"am"
            | b"i"
            | b"you"
            | b"we"
            | b"they"
            | b"he"
            | b"she"
            | b"it"
            | b"me"
            | b"us"
            | b"them"
            | b"more"
            | b"less"
            | b"other"
            | b"another"
            | b"times"
            | b"time"
            | b"miles"
            | b"mile"
            | b"blocks"
            | b"block"
            | b"minutes"
            | b"minute"
            | b"mins"
            | b"hours"
            | b"hour"
            | b"hrs"
            | b"days"
            | b"day"
            | b"weeks"
            | b"week"
            | b"months"
            | b"month"
            | b"years"
            | b"year"
            | b"kids"
            | b"people"
            | b"cars"
            | b"doors"
            | b"houses"
            | b"steps"
            | b"feet"
            | b"ft"
            | b"yards"
            | b"km"
            | b"big"
            | b"long"
            | b"short"
            | b"small"
            | b"little"
            | b"great"
            | b"good"
            | b"bad"
            | b"nice"
            | b"whole"
            | b"full"
            | b"half"
            | b"extra"
            | b"every"
            | b"each"
            | b"per"
            | b"all"
            | b"some"
            | b"any"
            | b"few"
            | b"many"
            | b"much"
            | b"very"
            | b"too"
            | b"just"
            | b"only"
            | b"also"
            | b"not"
            | b"no"
            | b"about"
            | b"than"
            | b"then"
            | b"when"
            | b"where"
            | b"there"
            | b"here"
            | b"what"
            | b"which"
            | b"who"
            | b"how"
            | b"if"
            | b"as"
            | b"do"
            | b"did"
            | b"does"
            | b"have"
            | b"has"
            | b"had"
            | b"get"
            | b"got"
            | b"go"
            | b"went"
            | b"take"
            | b"took"
            | b"make"
            | b"made"
            | b"see"
            | b"saw"
            | b"lbs"
            | b"mg"
            | b"mcg"
            | b"ml"
            | b"units"
            | b"pills"
            | b"tablets"
            | b"doses"
            | b"dollars"
            | b"bucks"
            | b"percent"
            | b"points"
            | b"items"
            | b"pages"
            | b"tickets"
            | b"dogs"
            | b"cats"
            | b"thanks"
            | b"thank"
            | b"please"
            | b"pls"
            | b"ok"
            | b"okay"
            | b"sorry"
            | b"yes"
            | b"hi"
            | b"hello"
            | b"today"
            | b"tomorrow"
            | b"tonight"
            | b"yesterday"
            | b"now"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redacted(text: &str) -> String {
        redact_text(text).0
    }

    fn kinds(text: &str) -> Vec<PiiKind> {
        redact_text(text).1
    }

    #[track_caller]
    fn untouched(texts: &[&str]) {
        for text in texts {
            assert_eq!(redacted(text), *text, "{text:?} should be left alone");
            assert!(!contains_pii(text), "{text:?}");
        }
    }

    #[track_caller]
    fn becomes(cases: &[(&str, &str)], kind: PiiKind) {
        for (text, want) in cases {
            let (out, found) = redact_text(text);
            assert_eq!(out, *want, "{text:?}");
            assert!(
                !found.is_empty() && found.iter().all(|&k| k == kind),
                "{text:?}: {found:?}"
            );
            assert!(contains_pii(text), "{text:?}");
        }
    }

    #[test]
    fn redacts_each_kind() {
        let (out, kinds) = redact_text(
            "mail ann.lee@example.org, call (555) 123-4567 or +1 555.987.6543, ssn 123-45-6789, card 4111 1111 1111 1111",
        );
        assert_eq!(
            out,
            "mail [EMAIL], call [PHONE] or [PHONE], ssn [SSN], card [CREDIT_CARD]"
        );
        assert_eq!(kinds.len(), 5);
    }

    #[test]
    fn kind_names_and_placeholders() {
        let names: Vec<_> = PiiKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "email",
                "phone",
                "ssn",
                "credit_card",
                "ipv4",
                "ipv6",
                "street_address",
                "date_of_birth"
            ]
        );
        assert_eq!(PiiKind::Ipv4.placeholder(), "[IP_ADDRESS]");
        assert_eq!(PiiKind::Ipv6.placeholder(), "[IP_ADDRESS]");
        assert_eq!(PiiKind::StreetAddress.placeholder(), "[ADDRESS]");
        assert_eq!(PiiKind::DateOfBirth.placeholder(), "[DOB]");
        assert_eq!(PiiKind::CreditCard.to_string(), "credit_card");
    }

    #[test]
    fn emails() {
        becomes(
            &[
                (
                    "write to ann.lee+work@mail.example.co.uk.",
                    "write to [EMAIL].",
                ),
                ("(JOHN_DOE99@Example.COM)", "([EMAIL])"),
                ("it's jane dot doe at gmail dot com", "it's [EMAIL]"),
                ("reach bob[at]corp[dot]org today", "reach [EMAIL] today"),
                ("try sam (at) example.net", "try [EMAIL]"),
            ],
            PiiKind::Email,
        );
        becomes(
            &[
                ("mail o'neil.smith@example.com", "mail [EMAIL]"),
                (
                    "email me at ann dot lee at studio dot photography.",
                    "email me at [EMAIL].",
                ),
                ("it's ann[at]studio[dot]photography", "it's [EMAIL]"),
            ],
            PiiKind::Email,
        );
        untouched(&[
            "meet me at example.com tomorrow",
            "the @channel ping at 5",
            "see dot points at the end",
            "the icon is logo@2x.png in assets",
            "look at this dot thing",
        ]);
    }

    #[test]
    fn phones() {
        becomes(
            &[
                ("call (555) 123-4567 now", "call [PHONE] now"),
                ("555.123.4567", "[PHONE]"),
                ("my cell is +1 555 123 4567.", "my cell is [PHONE]."),
                ("London office: +44 20 7946 0958", "London office: [PHONE]"),
                ("desk 555-123-4567 ext. 12, thanks", "desk [PHONE], thanks"),
                ("try 1-800-555-0199 x204", "try [PHONE]"),
                ("+1 (555) 123-4567", "[PHONE]"),
                (
                    "call +44 20 7946 0958 10:30 tomorrow",
                    "call [PHONE] 10:30 tomorrow",
                ),
                ("text me at 5551234567", "text me at [PHONE]"),
                ("my number is 555-1234", "my number is [PHONE]"),
                ("ring 020 7946 0958 after six", "ring [PHONE] after six"),
                ("he said 555 123 4567 twice", "he said [PHONE] twice"),
                ("+15551234567", "[PHONE]"),
                ("call +44 (0)20 7946 0958", "call [PHONE]"),
            ],
            PiiKind::Phone,
        );
        untouched(&[
            "ticket 555-1234-88 is open",
            "ISBN 978-0-306-40615-7",
            "ISBN 0-306-40615-2",
            "order number 5551234567 shipped",
            "lot 555-1234",
            "we did 555 1234 reps",
            "ORD-555-123-4567 was refunded",
            "ZIP+4 is 94103-1234",
            "f(2) and x+1",
        ]);
    }

    #[test]
    fn national_phone_formats() {
        becomes(
            &[
                ("my work line is 5551234567", "my work line is [PHONE]"),
                ("call 98765 43210 tonight", "call [PHONE] tonight"),
                ("098765 43210 is my cell", "[PHONE] is my cell"),
                ("Tel: 030/12345678", "Tel: [PHONE]"),
                ("it's 01 23 45 67 89.", "it's [PHONE]."),
                ("try (11) 91234-5678", "try [PHONE]"),
                ("0044 20 7946 0958", "[PHONE]"),
                ("(+91) 98765-43210", "[PHONE]"),
                ("0412 345 678 works", "[PHONE] works"),
                ("he said 555 - 123 - 4567", "he said [PHONE]"),
                ("M: 912 345 678", "M: [PHONE]"),
                ("(555) 123-4567 (ext. 12) ok", "[PHONE] ok"),
                (
                    "that's 630 56 38 90, my work line",
                    "that's [PHONE], my work line",
                ),
            ],
            PiiKind::Phone,
        );
        untouched(&[
            "order 555-123-4567 shipped",
            "tracking number 98765 43210",
            "part number 020 7946 0958",
            "case # 0020 1400 6838",
            "UPC 0 12345 67890 5",
            "IMEI 356938035643809",
            "SKU 1234-567-890",
            "12 345 678 people",
            "ref 4374 0030 7110 9610",
        ]);
    }

    #[test]
    fn ssns() {
        becomes(
            &[
                ("SSN 123-45-6789.", "SSN [SSN]."),
                ("my social is 123 45 6789", "my social is [SSN]"),
                (
                    "social security number: 123456789",
                    "social security number: [SSN]",
                ),
            ],
            PiiKind::Ssn,
        );
        untouched(&["invoice 123456789 paid"]);
        // Not an SSN's grouping; after "call", nine digits are a phone number (Seoul writes
        // 02-123-4567).
        assert_eq!(kinds("call 12-345-6789"), [PiiKind::Phone]);
    }

    #[test]
    fn ssn_context_and_validity() {
        becomes(
            &[
                ("SSN 000-12-3456", "SSN [SSN]"),
                ("123456789 is my SSN", "[SSN] is my SSN"),
                ("Taxpayer ID (SSN): 123 45 6789", "Taxpayer ID (SSN): [SSN]"),
                ("soc sec 123.45.6789", "soc sec [SSN]"),
            ],
            PiiKind::Ssn,
        );
        untouched(&[
            "part number 123-45-6789",
            "the lot number is 123-45-6789",
            "Batch no. 123 45 6789",
            "P/N 123-45-6789",
            "serial #123-45-6789 failed QA",
            "123-45-6789 (lot number)",
            "the part number for the replacement valve is 123-45-6789",
            "the order number for the blender is 98765 43210",
            "the code on the box was 000-12-3456",
            "it printed 666-12-3456",
            "the form shows 912-34-5678",
            "got 123-00-4567 and 123-45-0000",
            // A colon after a speaker's name ends the context of the turn before.
            "Agent: which SSN is on file Customer: I got 000-12-3456",
        ]);
    }

    #[test]
    fn cards() {
        becomes(
            &[
                (
                    "card 4111-1111-1111-1111 exp 12/27",
                    "card [CREDIT_CARD] exp 12/27",
                ),
                ("amex 3782 822463 10005", "amex [CREDIT_CARD]"),
                ("pay with 5500000000000004!", "pay with [CREDIT_CARD]!"),
                ("I paid 20 4111 1111 1111 1111", "I paid 20 [CREDIT_CARD]"),
            ],
            PiiKind::CreditCard,
        );
        untouched(&[
            "order #4111111111111112 shipped",
            "order 4111 1111 1111 1112 shipped",
            "tracking 9400111899223033005282",
            "ISBN 9780306406157",
            "lot 20231105",
        ]);
    }

    #[test]
    fn ipv4() {
        becomes(
            &[
                (
                    "login from 73.142.18.9 failed",
                    "login from [IP_ADDRESS] failed",
                ),
                ("ping 10.0.0.254.", "ping [IP_ADDRESS]."),
                ("subnet 192.168.1.0/24 is", "subnet [IP_ADDRESS] is"),
                (
                    "server version says 1.2.3.4 from 10.1.2.3",
                    "server version says 1.2.3.4 from [IP_ADDRESS]",
                ),
                ("it was 8.8.8.8:53", "it was [IP_ADDRESS]:53"),
            ],
            PiiKind::Ipv4,
        );
        untouched(&[
            "version 1.2.3.4 released",
            "we're on v2.10.0.1 now",
            "release 4.12.0.3 fixed it",
            "firmware 3.1.4.1 is out",
            "build 10.0.19045.3803",
            "see section 4.1.2.3",
            "octets 300.1.2.3 are invalid",
            "nested 1.2.3.4.5",
            "the version is now 1.2.3.4",
            "updated to 2.1.0.7 yesterday",
            "the 4.12.0.3 update is out",
            "2.1.0.7 release notes",
            "Version: 10.0.0.1",
        ]);
        assert_eq!(
            redacted("login from 10.1.2.3 after the update"),
            "login from [IP_ADDRESS] after the update"
        );
    }

    #[test]
    fn ipv6() {
        becomes(
            &[
                (
                    "from 2001:db8::8a2e:370:7334 today",
                    "from [IP_ADDRESS] today",
                ),
                ("[fe80::1ff:fe23:4567:890a]:443", "[[IP_ADDRESS]]:443"),
                ("2001:0DB8:85A3:0000:0000:8A2E:0370:7334.", "[IP_ADDRESS]."),
            ],
            PiiKind::Ipv6,
        );
        untouched(&[
            "meet at 10:30:45",
            "use std::net::Ipv6Addr",
            "MAC 00:1A:2B:3C:4D:5E",
            "ratio a::b",
        ]);
    }

    #[test]
    fn street_addresses() {
        becomes(
            &[
                ("I live at 1234 Elm Street.", "I live at [ADDRESS]."),
                (
                    "send it to 42 W. Oak Ave, Apt 5B please",
                    "send it to [ADDRESS] please",
                ),
                (
                    "77 Massachusetts Avenue, Cambridge, MA 02139 is MIT",
                    "[ADDRESS] is MIT",
                ),
                ("i'm at 9 elm st #4 now", "i'm at [ADDRESS] now"),
                (
                    "1600 Pennsylvania Ave NW, Washington, DC 20500",
                    "[ADDRESS]",
                ),
                ("221B Baker Street, London NW1 6XE", "[ADDRESS]"),
                ("350 5th Avenue, Suite 300", "[ADDRESS]"),
            ],
            PiiKind::StreetAddress,
        );
        untouched(&[
            "we walked 3 blocks down Main Street",
            "it's 2 doors down the road",
            "I spent 3 hours on Elm Street",
            "we took 2 big road trips",
            "ZIP 94103",
            "my zip code is 94103",
            "take 500 mg twice a day",
            "I need 10 minutes, way too much",
        ]);
    }

    #[test]
    fn address_localities() {
        becomes(
            &[
                (
                    "ship to 12 Oak St Apt 16D Springfield IL 62704 today",
                    "ship to [ADDRESS] today",
                ),
                (
                    "I live at 77 Elm Street, Springfield, Illinois.",
                    "I live at [ADDRESS].",
                ),
                ("1538 Lincoln Dr Denver, Colorado 80236", "[ADDRESS]"),
                ("12 oak st apt 4 denver co 80202", "[ADDRESS]"),
                (
                    "send it to 9 Elm St\nDenver, CO 80202",
                    "send it to [ADDRESS]",
                ),
                ("Apt 5B, 42 Oak Ave", "[ADDRESS]"),
                (
                    "it's 12 Fox Hollow Run, Boise, ID 83702-1234, USA.",
                    "it's [ADDRESS].",
                ),
                ("mail it to 88 Main St, Denver.", "mail it to [ADDRESS]."),
                ("5 Willow Creek Xing, Coeur d'Alene, ID!", "[ADDRESS]!"),
                (
                    "2355 Martin Luther King Jr. Blvd SE, Salt Lake City, UT",
                    "[ADDRESS]",
                ),
                ("100 Queen St W, Toronto, ON M5H 2N2", "[ADDRESS]"),
                ("9 Pine Ave, Long Beach, CA 90802", "[ADDRESS]"),
                (
                    "at 8014 lexington circle #17a, little rock ar; ok",
                    "at [ADDRESS]; ok",
                ),
            ],
            PiiKind::StreetAddress,
        );
        untouched(&[
            "i saw 4 deer run past the fence",
            "we had 3 picnics in the park",
            "I spent 2 hours on Elm Street, Denver was hot",
            "we have 3 Main St locations.",
            "there are 2 Elm Street stores in town",
        ]);
        assert_eq!(
            redacted("ship to 88 Main St, Thanks!"),
            "ship to [ADDRESS], Thanks!"
        );
        assert_eq!(
            redacted("mail it to 6 Oak Pl #2, Burlington VT. Is 79479 covered?"),
            "mail it to [ADDRESS]. Is 79479 covered?"
        );
        // A city alone is taken only where its clause ends.
        assert_eq!(
            redacted("I live at 12 Oak St, Denver is far"),
            "I live at [ADDRESS], Denver is far"
        );
    }

    #[test]
    fn dates_of_birth() {
        becomes(
            &[
                ("DOB: 03/14/1985", "DOB: [DOB]"),
                ("date of birth 1985-03-14, ok", "date of birth [DOB], ok"),
                ("I was born on March 14, 1985.", "I was born on [DOB]."),
                ("born 14 March 1985", "born [DOB]"),
                ("b. 7/4/76", "b. [DOB]"),
                ("D.O.B. 14.03.1985", "D.O.B. [DOB]"),
                ("3/14/1985 is my birthday", "[DOB] is my birthday"),
                ("born on the 14th of March, 1985", "born on the [DOB]"),
                ("my birthday is March 14", "my birthday is [DOB]"),
                ("DOB 14-Mar-1985.", "DOB [DOB]."),
                ("born 1985-03-14T08:30:00Z", "born [DOB]T08:30:00Z"),
            ],
            PiiKind::DateOfBirth,
        );
        untouched(&[
            "born in 1985",
            "I was born 40 years ago",
            "the appointment is on 03/14/2024",
            "March 14, 2024 was the deadline",
            "we met on 2023-11-05",
            "my son was born last week; his checkup is on 03/14/2024",
            "I was born in Ohio, and on 3/14/2024 I moved",
        ]);
        assert_eq!(
            redacted("my date of birth, for the record, is 12.7.1964."),
            "my date of birth, for the record, is [DOB]."
        );
        assert_eq!(redacted("age 36 (DOB 4/3/1988)"), "age 36 (DOB [DOB])");
        // A birth word belongs to the number it stands next to.
        assert_eq!(
            redacted("05-26-1972 (DOB) the policy renews 1/25/20"),
            "[DOB] (DOB) the policy renews 1/25/20"
        );
        assert_eq!(
            redacted("it renews 10/1/2020 and my date of birth is June 28, 1996"),
            "it renews 10/1/2020 and my date of birth is [DOB]"
        );
    }

    #[test]
    fn everyday_numbers_stay() {
        untouched(&[
            "in 2024 we had 42 items",
            "BP 120/80, HR 72, A1C 6.5%",
            "take 0.5 mg at 10:30 pm",
            "it costs $1,299.99 or $19.99 a month",
            "PHQ-9 score of 14, GAD-7 of 12",
            "2-3 times a day for 3-4 weeks",
            "weight 180 lbs, temp 98.6",
            "1,234,567 users in Q3",
            "room 204 at 3:45",
            "the 12/25 party",
        ]);
    }

    #[test]
    fn overlapping_items_merge() {
        assert_eq!(
            redacted("mail 5551234567@example.com now"),
            "mail [EMAIL] now"
        );
        assert_eq!(
            kinds("::ffff:192.168.1.1 and 1234 Elm St"),
            vec![PiiKind::Ipv6, PiiKind::StreetAddress]
        );
    }

    #[test]
    fn find_pii_reports_ranges() {
        let text = "ssn 123-45-6789 ok";
        assert_eq!(
            find_pii(text),
            vec![PiiMatch {
                kind: PiiKind::Ssn,
                range: 4..15
            }]
        );
    }

    #[test]
    fn non_ascii_text_is_safe() {
        assert_eq!(
            redacted("Café – appelez le 555-123-4567 ou écrivez à josé@exemple.fr"),
            "Café – appelez le [PHONE] ou écrivez à [EMAIL]"
        );
        untouched(&["Ünïcödé 12 – “quotes” 3:4 ✓"]);
    }

    #[test]
    fn redacts_nested_json_strings_only() {
        let mut v = serde_json::json!({"owner": {"email": "x@y.io", "n": 5}, "tags": ["ok", "555-123-4567"]});
        let kinds = redact_json(&mut v);
        assert_eq!(kinds, vec![PiiKind::Email, PiiKind::Phone]);
        assert_eq!(v["owner"]["email"], "[EMAIL]");
        assert_eq!(v["owner"]["n"], 5);
        assert_eq!(v["tags"][1], "[PHONE]");
    }

    #[test]
    fn json_keys_give_context() {
        let mut v = serde_json::json!({
            "dob": "1985-03-14",
            "patient": {"dateOfBirth": "March 14, 1985", "birth_date": "1985-03-14T00:00:00Z"},
            "mobilePhones": ["5551234567"],
            "ssn": "123456789",
            "release_date": "2024-03-14",
            "adobe_build": "2024-01-01",
            "text": "order 5551234567",
            "social_links": "123456789"
        });
        let mut kinds = redact_json(&mut v);
        kinds.sort();
        assert_eq!(
            kinds,
            [
                PiiKind::Phone,
                PiiKind::Ssn,
                PiiKind::DateOfBirth,
                PiiKind::DateOfBirth,
                PiiKind::DateOfBirth
            ]
        );
        assert_eq!(v["dob"], "[DOB]");
        assert_eq!(v["patient"]["birth_date"], "[DOB]T00:00:00Z");
        assert_eq!(v["patient"]["dateOfBirth"], "[DOB]");
        assert_eq!(v["mobilePhones"][0], "[PHONE]");
        assert_eq!(v["ssn"], "[SSN]");
        assert_eq!(v["release_date"], "2024-03-14");
        assert_eq!(v["text"], "order 5551234567");
        assert_eq!(v["social_links"], "123456789");
    }

    #[test]
    fn luhn() {
        assert!(luhn_valid("4111111111111111"));
        assert!(luhn_valid("4111 1111 1111 1111"));
        assert!(!luhn_valid("4111111111111112"));
        assert!(!luhn_valid("1234"));
    }
}

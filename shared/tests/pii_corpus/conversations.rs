//! Tuning set: support chats, clinic and HR intake, delivery and IT threads.
//!
//! Each record is two to five turns. Most plant one or two identifiers in one of many surface
//! forms, and most also carry look-alikes: numbers of the same shape that are not personal data
//! (part and lot numbers, versions, ISBNs, ZIP codes alone, dates without a birth word, …).

use super::{Family, Item, Record, Rng, Slot};

const SPEAKERS: &[&str] = &[
    "Agent: ",
    "Customer: ",
    "Nurse: ",
    "Patient: ",
    "HR: ",
    "Candidate: ",
    "Tech: ",
    "User: ",
    "Dispatcher: ",
    "Driver: ",
    "",
];

const FILLER: &[&str] = &[
    "Thanks for waiting, I'm pulling up your file now.",
    "Sorry, the connection dropped for a second.",
    "No worries, take your time.",
    "Can you confirm a few details for me?",
    "I really appreciate the help with this.",
    "The portal keeps timing out when I try to upload anything.",
    "Let me check with my supervisor and get back to you.",
    "That should be everything we need from you today.",
    "We'll send a confirmation once it's processed.",
    "I'm not sure, my husband usually handles the paperwork.",
    "Is there anything else I can help with?",
    "Honestly this has been a stressful week.",
    "The technician was polite but didn't fix the problem.",
    "Could you spell that for me?",
    "ok perfect, thank you so much",
    "I think the form froze halfway through.",
    "We're running a little behind schedule today.",
    "That's fine, I can wait.",
];

fn speaker(rng: &mut Rng) -> &'static str {
    rng.pick(SPEAKERS)
}

// ---------------------------------------------------------------------------------------------
// Phones

/// (form, pattern, needs a phone word). In a pattern `D` is any digit, `N` 2-9, `Z` 1-9, and
/// the text before `|` (a country code) may survive redaction.
const PHONES: &[(&str, &str, bool)] = &[
    ("nanp parens", "|(NDD) NDD-DDDD", false),
    ("nanp dashes", "|NDD-NDD-DDDD", false),
    ("nanp dots", "|NDD.NDD.DDDD", false),
    ("nanp spaces", "|NDD NDD DDDD", false),
    ("nanp +1 spaces", "+1 |NDD NDD DDDD", false),
    ("nanp +1 dashes", "+1-|NDD-NDD-DDDD", false),
    ("nanp 1- dashes", "1-|NDD-NDD-DDDD", false),
    ("nanp +1 parens", "+1 |(NDD) NDD-DDDD", false),
    ("nanp 1 parens", "1 |(NDD) NDD-DDDD", false),
    ("nanp +1 dots", "+1.|NDD.NDD.DDDD", false),
    ("nanp e164", "+1|NDDNDDDDDD", false),
    ("nanp tight parens", "|(NDD)NDD-DDDD", false),
    ("nanp space dash", "|NDD NDD-DDDD", false),
    ("nanp bare", "|NDDNDDDDDD", true),
    ("nanp 1 bare", "|1NDDNDDDDDD", true),
    ("local 7", "|NDD-DDDD", true),
    ("uk london +44", "+44 |20 DDDD DDDD", false),
    ("uk london +44 (0)", "+44 (0)|20 DDDD DDDD", false),
    ("uk london national", "|020 DDDD DDDD", false),
    ("uk london parens", "|(020) DDDD DDDD", false),
    ("uk mobile national", "|07NDD DDDDDD", false),
    ("uk mobile +44", "+44 |7NDD DDDDDD", false),
    ("uk regional", "|0161 DDD DDDD", false),
    ("uk 5+6", "|01NDD DDDDDD", false),
    ("uk 00 prefix", "0044 |20 DDDD DDDD", false),
    ("de berlin +49", "+49 |30 DDDDDDDD", false),
    ("de berlin national", "|030 DDDDDDDD", false),
    ("de slash", "|030/DDDDDDDD", false),
    ("de mobile national", "|015N DDDDDDDD", false),
    ("de mobile +49", "+49 |15N DDDDDDDD", false),
    ("de +49 (0)", "+49 (0)|89 DDDDDDD", false),
    ("de 00 prefix", "0049 |89 DDDDDDD", false),
    ("de dashed", "|0211-DDDDDDD", false),
    ("fr national", "|0Z DD DD DD DD", false),
    ("fr dots", "|0Z.DD.DD.DD.DD", false),
    ("fr +33", "+33 |Z DD DD DD DD", false),
    ("fr +33 (0)", "+33 (0)|6 DD DD DD DD", false),
    ("fr dashes", "|06-DD-DD-DD-DD", false),
    ("in +91 5+5", "+91 |9DDDD DDDDD", false),
    ("in 5+5", "|9DDDD DDDDD", false),
    ("in 6+5 trunk", "|09DDDD DDDDD", false),
    ("in +91 dash bare", "+91-|8DDDDDDDDD", false),
    ("in 5-5 dash", "|7DDDD-DDDDD", false),
    ("in bare", "|9DDDDDDDDD", true),
    ("in landline", "|080 DDDD DDDD", false),
    ("in landline dash", "|011-DDDD-DDDD", false),
    ("au +61", "+61 |2 DDDD DDDD", false),
    ("au parens", "|(02) DDDD DDDD", false),
    ("au national", "|03 DDDD DDDD", false),
    ("au mobile", "|04DD DDD DDD", false),
    ("au mobile +61", "+61 |4DD DDD DDD", false),
    ("br +55", "+55 |11 9DDDD-DDDD", false),
    ("br parens", "|(21) 9DDDD-DDDD", false),
    ("br +55 parens", "+55 |(11) 9DDDD-DDDD", false),
    ("br landline", "|(31) NDDD-DDDD", false),
    ("jp tokyo", "|03-DDDD-DDDD", false),
    ("jp mobile", "|090-DDDD-DDDD", false),
    ("jp +81", "+81 |3-DDDD-DDDD", false),
    ("jp +81 mobile", "+81 |90 DDDD DDDD", false),
    ("jp freephone", "|0120-DDD-DDD", false),
    ("mx +52", "+52 |55 DDDD DDDD", false),
    ("mx national", "|55 DDDD DDDD", false),
    ("mx parens", "|(55) DDDD-DDDD", false),
    ("mx +52 1", "+52 1 |33 DDDD DDDD", false),
    ("cn +86 mobile", "+86 |13N DDDD DDDD", false),
    ("cn mobile", "|13N DDDD DDDD", false),
    ("cn mobile bare", "|15NDDDDDDDD", true),
    ("cn beijing", "|010-DDDD-DDDD", false),
    ("cn shanghai 3-8", "|021-DDDDDDDD", false),
    ("cn +86 landline", "+86 |10 DDDD DDDD", false),
    ("es +34", "+34 |9DD DDD DDD", false),
    ("es national", "|9DD DDD DDD", true),
    ("es mobile", "|6DD DD DD DD", true),
    ("it +39", "+39 |06 DDDD DDDD", false),
    ("it national", "|06 DDDD DDDD", false),
    ("it mobile", "|3DD DDD DDDD", false),
    ("nl +31", "+31 |20 DDD DDDD", false),
    ("nl national", "|020 DDD DDDD", false),
    ("nl mobile", "|06 DDDDDDDD", false),
    ("kr mobile", "|010-DDDD-DDDD", false),
    ("kr +82", "+82 |10-DDDD-DDDD", false),
    ("za +27", "+27 |82 DDD DDDD", false),
    ("ng +234", "+234 |80N DDD DDDD", false),
    ("sg +65", "+65 |NDDD DDDD", false),
    ("ie +353", "+353 |87 DDD DDDD", false),
    ("ae +971", "+971 |50 DDD DDDD", false),
    ("ru +7", "+7 |9DD DDD-DD-DD", false),
];

fn phone(rng: &mut Rng) -> (Item, bool) {
    let (form, pattern, needs_cue) = rng.pick(PHONES);
    let filled = rng.fill(pattern);
    let (cc, rest) = filled
        .split_once('|')
        .expect("pattern has a country-code mark");
    let mut item = Item::new(Family::Phone, form);
    item.plain(cc).digits_secret(rest);
    if !needs_cue && rng.chance(10) {
        let width = rng.int(2, 4) as usize;
        let ext = rng.digits(width);
        item.plain(rng.pick(&[" ext. ", " ext ", " x", " x ", " extension ", ", ext. "]))
            .secret(&ext);
    }
    (item.take(), needs_cue)
}

const PHONE_CUED: &[&str] = &[
    "can you call me at {}?",
    "my work line is {}.",
    "Work line: {}",
    "Call {} and ask for the night nurse.",
    "the direct line is {}, it skips the menu.",
    "reach me on {} after six.",
    "text me at {} when you're outside",
    "My mobile number is {}.",
    "Cell: {}",
    "Tel. {}",
    "Ph: {}",
    "phone # {}",
    "WhatsApp me on {} instead.",
    "my landline is {} but it's usually off the hook.",
    "fax it to {} please",
    "you can ring {} any time before noon.",
    "dial {} from the lobby phone",
    "Emergency contact number: {}",
    "her number is {} if I'm unavailable.",
    "My home phone is {}.",
    "the best number to reach me is {}!",
    "call or text {}",
    "please give me a call at {} tomorrow.",
    "if anything comes up you can call me anytime at {}.",
    "The number to call is {}.",
    "contact: {}",
    "mobile {} (evenings)",
    "my cell phone number changed to {}.",
];

const PHONE_AFTER: &[&str] = &[
    "{} is my cell.",
    "{} — that's my work line.",
    "{} (mobile)",
    "{} is the best number for me.",
];

/// Only for forms whose shape alone says phone.
const PHONE_PLAIN: &[&str] = &[
    "I'm usually at {} in the evenings.",
    "it's {}, ask for Sam.",
    "Put {} on the form.",
    "I tried {} twice but nobody picked up.",
    "{} — leave a message if I don't answer.",
    "you can get hold of me on {}.",
    "the old one was {} but I switched providers.",
];

// ---------------------------------------------------------------------------------------------
// SSNs

fn ssn_groups(rng: &mut Rng) -> (String, String, String) {
    let mut area = rng.int(1, 899);
    if area == 666 {
        area = 667;
    }
    (
        format!("{area:03}"),
        format!("{:02}", rng.int(1, 99)),
        format!("{:04}", rng.int(1, 9999)),
    )
}

fn ssn(rng: &mut Rng) -> (Item, bool) {
    let (a, g, s) = ssn_groups(rng);
    let (form, sep, needs_cue) = rng.pick(&[
        ("dashed", "-", false),
        ("dashed", "-", false),
        ("dashed", "-", false),
        ("spaced", " ", false),
        ("dotted", ".", false),
        ("bare", "", true),
    ]);
    let mut item = Item::new(Family::Ssn, form);
    item.secret(&a).plain(sep).secret(&g).plain(sep).secret(&s);
    (item.take(), needs_cue)
}

const SSN_CUED: &[&str] = &[
    "my SSN is {}.",
    "SSN: {}",
    "SSN# {}",
    "social security number {}",
    "Social Security No. {} — sorry if that's too much info.",
    "my social is {}",
    "SS# {}",
    "soc sec {}, I think",
    "ssn {} for the background check",
    "Social security: {}.",
    "the last form had my SSN as {}.",
    "SSN/TIN: {}",
    "you need my social? it's {}",
];
const SSN_AFTER: &[&str] = &[
    "{} is my social.",
    "{} (SSN)",
    "{} — my social security number.",
];
/// Only for the dashed, spaced and dotted forms.
const SSN_PLAIN: &[&str] = &[
    "it's {}, same as on my W-2.",
    "The intake sheet shows {}.",
    "I typed {} into the wrong box by accident.",
    "for the background check: {}",
];

const SSN_LOOK_ALIKES: &[&str] = &[
    "part number {}",
    "the part number is {}",
    "lot {}",
    "Lot #{}",
    "batch {}",
    "batch number: {}",
    "serial no. {}",
    "model {}",
    "order #{}",
    "case {}",
    "ref {}",
    "tracking {}",
    "SKU {}",
    "invoice no {}",
    "catalog {}",
    "item {}",
    "part no. {}",
    "reference code {}",
    "the lot number is {}",
    "claim {}",
];

fn ssn_look_alike(rng: &mut Rng, r: &mut Record) {
    let (a, g, s) = ssn_groups(rng);
    let sep = rng.pick(&["-", "-", "-", " ", "."]);
    let number = format!("{a}{sep}{g}{sep}{s}");
    let t = rng.pick(SSN_LOOK_ALIKES);
    let (before, after) = t.split_once("{}").expect("slot");
    r.say(&capitalise_maybe(rng, before));
    r.look_alike(Family::Ssn, "cued 3-2-4 identifier", &number);
    r.say(after);
}

/// An SSN-shaped number no SSN can be: area 000, 666 or 9xx, group 00 or serial 0000.
fn invalid_ssn(rng: &mut Rng) -> String {
    let (a, g, s) = ssn_groups(rng);
    match rng.below(5) {
        0 => format!("000-{g}-{s}"),
        1 => format!("666-{g}-{s}"),
        2 => format!("9{}-{g}-{s}", rng.digits(2)),
        3 => format!("{a}-00-{s}"),
        _ => format!("{a}-{g}-0000"),
    }
}

// ---------------------------------------------------------------------------------------------
// Cards

fn luhn_check(body: &str) -> u32 {
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

fn card_digits(rng: &mut Rng, prefix: &str, len: usize, valid: bool) -> String {
    let body = format!("{prefix}{}", rng.digits(len - 1 - prefix.len()));
    let check = luhn_check(&body);
    let check = if valid {
        check
    } else {
        (check + rng.int(1, 9)) % 10
    };
    format!("{body}{check}")
}

fn group_card(n: &str, sep: &str) -> String {
    let cuts: &[usize] = match n.len() {
        15 | 14 => &[4, 10],
        _ => &[4, 8, 12, 16],
    };
    let mut out = String::new();
    let mut last = 0;
    for &c in cuts.iter().filter(|&&c| c < n.len()) {
        out.push_str(&n[last..c]);
        out.push_str(sep);
        last = c;
    }
    out.push_str(&n[last..]);
    out
}

fn card(rng: &mut Rng) -> Item {
    let (form, prefix, len) = rng.pick(&[
        ("visa 16", "4", 16),
        ("visa 16", "4", 16),
        ("visa 13", "4", 13),
        ("mastercard", "5", 16),
        ("mastercard 2-series", "22", 16),
        ("amex", "37", 15),
        ("amex", "34", 15),
        ("discover", "6011", 16),
        ("diners", "36", 14),
        ("jcb", "35", 16),
    ]);
    let n = card_digits(rng, prefix, len, true);
    let text = match rng.below(4) {
        0 | 1 if len > 13 => group_card(&n, " "),
        2 if len > 13 => group_card(&n, "-"),
        _ => n,
    };
    let mut item = Item::new(Family::Card, form);
    item.digits_secret(&text);
    item.take()
}

const CARD_T: &[&str] = &[
    "card number {}",
    "my Visa is {}, expires 04/27.",
    "charge {} for the balance",
    "cc: {}",
    "Amex {} please.",
    "it's {} exp 11/26, cvv on the back.",
    "{} is the one on file.",
    "I paid with {} and got billed twice.",
    "use the card ending in the digits {}",
    "the new card is {}.",
];

// ---------------------------------------------------------------------------------------------
// IP addresses

fn ipv4(rng: &mut Rng) -> Item {
    let first = rng.pick(&[10, 172, 192, 73, 203, 98, 24, 8, 45, 151, 185]);
    let o = [first, rng.int(0, 255), rng.int(0, 255), rng.int(1, 254)];
    let mut item = Item::new(Family::Ip, "ipv4");
    for (i, x) in o.iter().enumerate() {
        if i > 0 {
            item.plain(".");
        }
        item.secret(&x.to_string());
    }
    match rng.below(8) {
        0 => {
            item.plain(&format!("/{}", rng.pick(&[8, 16, 24, 32])));
            item.form = "ipv4 cidr";
        }
        1 => {
            item.plain(&format!(":{}", rng.pick(&[22, 80, 443, 8080])));
            item.form = "ipv4 port";
        }
        _ => {}
    }
    item.take()
}

fn ipv6(rng: &mut Rng) -> Item {
    let mut h = || format!("{:x}", rng.next() & 0xffff);
    let g: Vec<String> = (0..8).map(|_| h()).collect();
    let (form, text) = match rng.below(7) {
        0 => ("ipv6 full", g.join(":")),
        1 => ("ipv6 doc", format!("2001:db8::{}:{}", g[6], g[7])),
        2 => (
            "ipv6 link-local",
            format!("fe80::{}:{}:{}", g[5], g[6], g[7]),
        ),
        3 => (
            "ipv6 upper",
            format!("{}:{}:{}::{}", g[0], g[1], g[2], g[7]).to_uppercase(),
        ),
        4 => ("ipv6 zone", format!("fe80::{}:{}%eth0", g[6], g[7])),
        5 => (
            "ipv6 mapped",
            format!(
                "::ffff:{}.{}.{}.{}",
                rng_octet(&g[0]),
                rng_octet(&g[1]),
                rng_octet(&g[2]),
                rng_octet(&g[3])
            ),
        ),
        _ => (
            "ipv6 isp",
            format!("2a02:{}:{}:{}::{}", g[1], g[2], g[3], g[7]),
        ),
    };
    let mut item = Item::new(Family::Ip, form);
    // Every group but the well-known prefixes is secret.
    let mut first = true;
    for part in text.split_inclusive([':', '.', '%']) {
        let (body, sep) = match part.char_indices().last() {
            Some((i, ':' | '.' | '%')) => (&part[..i], &part[i..]),
            _ => (part, ""),
        };
        let known = matches!(
            body.to_ascii_lowercase().as_str(),
            "" | "2001" | "db8" | "fe80" | "2a02" | "ffff" | "eth0"
        );
        if known || (first && body.len() < 3) {
            item.plain(body);
        } else {
            item.secret(body);
        }
        item.plain(sep);
        first = false;
    }
    item.take()
}

fn rng_octet(hex: &str) -> u32 {
    u32::from_str_radix(hex, 16).unwrap_or(7) % 223 + 1
}

const IP_T: &[&str] = &[
    "there was a login from {} at midnight.",
    "my IP is {}",
    "server {} is down again.",
    "I can ping {} but nothing else.",
    "the gateway is {}, right?",
    "host {} refuses the connection",
    "{} keeps timing out.",
    "please whitelist {} for us.",
    "it resolves to {} now.",
    "the alert said connection from [{}] was blocked.",
    "our static address is {}.",
];

const VERSION_T: &[&str] = &[
    "we're on v{} now.",
    "version {} fixed it",
    "Version: {}",
    "build {} is what QA signed off",
    "release {} broke the export.",
    "firmware {} bricked the router.",
    "the version is now {}.",
    "the app updated to version {} overnight",
    "{} release notes mention it.",
    "the {} update is out",
    "after the {} build, logins fail",
    "ver. {} on the about screen",
    "release candidate {} is staged",
    "rev {} of the driver",
    "App version {} (latest)",
    "I'm still running version {}!",
];

fn version_quad(rng: &mut Rng) -> String {
    format!(
        "{}.{}.{}.{}",
        rng.int(1, 30),
        rng.int(0, 20),
        rng.int(0, 255),
        rng.int(0, 255)
    )
}

// ---------------------------------------------------------------------------------------------
// Street addresses

const STREET_NAMES: &[&str] = &[
    "Elm",
    "Maple",
    "Oak",
    "Cedar",
    "Pine",
    "Main",
    "Washington",
    "Lincoln",
    "Lakeview",
    "Sunset",
    "Highland",
    "Jefferson",
    "Church",
    "Old Mill",
    "Martin Luther King Jr.",
    "5th",
    "42nd",
    "1st",
    "103rd",
    "Willow Creek",
    "Peachtree",
    "Saint Andrews",
    "El Camino",
    "Magnolia",
    "Riverside",
    "Hawthorne",
    "Prospect",
    "Spring Valley",
    "Fox Hollow",
    "Bay",
    "Forest",
];

/// (full, abbreviation).
const SUFFIXES: &[(&str, &str)] = &[
    ("Street", "St"),
    ("Street", "St"),
    ("Avenue", "Ave"),
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
    ("Highway", "Hwy"),
    ("Trail", "Trl"),
    ("Square", "Sq"),
    ("Loop", "Loop"),
    ("Ridge", "Rdg"),
    ("Crossing", "Xing"),
    ("Point", "Pt"),
    ("Run", "Run"),
    ("Path", "Path"),
    ("Heights", "Hts"),
    ("Grove", "Grv"),
    ("Commons", "Cmns"),
];

const UNITS: &[&str] = &[
    "Apt",
    "Apt.",
    "Apartment",
    "Unit",
    "Suite",
    "Ste",
    "Ste.",
    "#",
    "Fl",
    "Floor",
    "Rm",
    "Room",
    "Bldg",
];

/// (city, state code, state name, ZIP prefix).
const PLACES: &[(&str, &str, &str, &str)] = &[
    ("Springfield", "IL", "Illinois", "627"),
    ("Salt Lake City", "UT", "Utah", "841"),
    ("San Francisco", "CA", "California", "941"),
    ("New York", "NY", "New York", "100"),
    ("Fort Worth", "TX", "Texas", "761"),
    ("St. Paul", "MN", "Minnesota", "551"),
    ("Winston-Salem", "NC", "North Carolina", "271"),
    ("Coeur d'Alene", "ID", "Idaho", "838"),
    ("Kansas City", "MO", "Missouri", "641"),
    ("Las Vegas", "NV", "Nevada", "891"),
    ("Baton Rouge", "LA", "Louisiana", "708"),
    ("Ann Arbor", "MI", "Michigan", "481"),
    ("West Palm Beach", "FL", "Florida", "334"),
    ("Denver", "CO", "Colorado", "802"),
    ("Boise", "ID", "Idaho", "837"),
    ("Omaha", "NE", "Nebraska", "681"),
    ("Charleston", "WV", "West Virginia", "253"),
    ("Providence", "RI", "Rhode Island", "029"),
    ("Santa Fe", "NM", "New Mexico", "875"),
    ("Washington", "DC", "District of Columbia", "200"),
    ("Portland", "ME", "Maine", "041"),
    ("Concord", "NH", "New Hampshire", "033"),
    ("Sioux Falls", "SD", "South Dakota", "571"),
    ("Anchorage", "AK", "Alaska", "995"),
    ("Honolulu", "HI", "Hawaii", "968"),
];

fn house_number(rng: &mut Rng) -> String {
    match rng.below(10) {
        0 => rng.int(1, 99).to_string(),
        1..=3 => rng.int(100, 999).to_string(),
        4..=6 => rng.int(1000, 9999).to_string(),
        7 => rng.int(10000, 99999).to_string(),
        8 => format!("{}{}", rng.int(1, 999), rng.pick(&["A", "B", "C"])),
        _ => format!("{}-{}", rng.int(10, 99), rng.int(10, 99)),
    }
}

fn unit_value(rng: &mut Rng) -> String {
    match rng.below(6) {
        0 => format!("{}{}", rng.int(1, 30), rng.pick(&["A", "B", "C", "D"])),
        1 => rng.int(1, 40).to_string(),
        2 => rng.int(100, 2400).to_string(),
        3 => rng.pick(&["A", "B", "C"]).to_string(),
        4 => format!("{}-{}", rng.int(1, 9), rng.pick(&["A", "B"])),
        _ => rng.int(2, 9).to_string(),
    }
}

fn zip(rng: &mut Rng, prefix: &str) -> String {
    format!("{prefix}{}", rng.digits(2))
}

fn street_address(rng: &mut Rng) -> Item {
    let mut item = Item::new(Family::Address, "street only");
    item.secret(&house_number(rng)).plain(" ");
    if rng.chance(15) {
        item.plain(rng.pick(&["N ", "S. ", "E ", "W. ", "North ", "South "]));
    }
    let name = rng.pick(STREET_NAMES);
    for (i, w) in name.split(' ').enumerate() {
        if i > 0 {
            item.plain(" ");
        }
        item.secret(w);
    }
    let (full, abbr) = rng.pick(SUFFIXES);
    let abbreviated = rng.chance(55);
    item.plain(" ");
    item.plain(if abbreviated { abbr } else { full });
    if abbreviated && abbr != full && rng.chance(25) {
        item.plain(".");
    }
    if rng.chance(8) {
        item.plain(rng.pick(&[" NW", " SE", " NE", " SW"]));
    }

    let mut form = String::new();
    if rng.chance(40) {
        let sep = rng.pick(&[", ", " ", ", "]);
        item.plain(sep);
        if rng.chance(12) {
            let n = rng.int(2, 12);
            let ord = match n {
                2 => "nd",
                3 => "rd",
                _ => "th",
            };
            item.secret(&format!("{n}{ord}")).plain(" Floor");
        } else {
            let unit = rng.pick(UNITS);
            item.plain(unit);
            if unit != "#" {
                item.plain(rng.pick(&[" ", " ", " #"]));
            }
            item.secret(&unit_value(rng));
        }
        form.push_str("unit ");
        form.push_str(if sep == " " { "no-comma " } else { "comma " });
    }

    if rng.chance(70) {
        let (city, code, name, prefix) = rng.pick(PLACES);
        let comma = rng.chance(60);
        let lead = if comma {
            ", "
        } else if rng.chance(10) {
            "\n"
        } else {
            " "
        };
        item.plain(lead);
        for (i, w) in city.split(' ').enumerate() {
            if i > 0 {
                item.plain(" ");
            }
            item.secret(w);
        }
        let state_full = rng.chance(30);
        let has_zip = rng.chance(65);
        let state_sep = if comma || rng.chance(30) { ", " } else { " " };
        match rng.below(10) {
            // City and ZIP, no state.
            0 if has_zip => {
                item.plain(" ").secret(&zip(rng, prefix));
                form.push_str("city+zip");
            }
            _ => {
                item.plain(state_sep);
                let state = if state_full { name } else { code };
                for (i, w) in state.split(' ').enumerate() {
                    if i > 0 {
                        item.plain(" ");
                    }
                    // "of" in "District of Columbia" says nothing.
                    if w == "of" {
                        item.plain(w);
                    } else {
                        item.secret(w);
                    }
                }
                form.push_str(if state_full {
                    "city+state name"
                } else {
                    "city+state code"
                });
                if has_zip {
                    item.plain(" ").secret(&zip(rng, prefix));
                    if rng.chance(20) {
                        item.plain("-").secret(&rng.digits(4));
                        form.push_str("+zip4");
                    } else {
                        form.push_str("+zip");
                    }
                }
                if rng.chance(6) {
                    item.plain(rng.pick(&[", USA", " USA", ", United States"]));
                }
            }
        }
        form.push_str(if comma { " commas" } else { " no commas" });
    } else if form.is_empty() {
        form.push_str("street only");
    } else {
        form.push_str("street+unit");
    }
    item.form = Box::leak(form.into_boxed_str());
    if rng.chance(12) {
        item.lowercase();
        item.form = Box::leak(format!("{} lowercase", item.form).into_boxed_str());
    } else if rng.chance(3) {
        item.uppercase();
        item.form = Box::leak(format!("{} uppercase", item.form).into_boxed_str());
    }
    item.take()
}

const ADDRESS_T: &[&str] = &[
    "I live at {}.",
    "ship it to {}",
    "my address is {}!",
    "mail the forms to {} please.",
    "Home address: {}",
    "we moved to {} in the spring.",
    "the delivery address is {}, the side door.",
    "deliver to {}?",
    "send the replacement to {} and text me",
    "{} is where I'm staying now.",
    "it's {} — the blue door.",
    "our office is at {}; parking is in the back.",
    "(billing: {})",
    "new address {}",
];

const ADDRESS_LOOK_ALIKES: &[&str] = &[
    "we walked 3 blocks down Main Street",
    "it's 5 minutes from Oak Avenue",
    "I spent 2 hours on Highland Road yesterday",
    "take Route 66 past the diner",
    "traffic on Highway 101 was awful",
    "exit 23 off Interstate 80",
    "she's on Floor 12, Room 1204",
    "Gate 12 at Terminal 3",
    "I drove 30 miles down Pine Street",
    "we have 2 stores on Elm Street",
    "it took 20 minutes to reach Cedar Lane",
    "there are 4 coffee shops on Lakeview Drive",
    "we bought 3 boxes at the Main St market",
    "the 2 kids ran down Church Street",
];

fn zip_look_alike(rng: &mut Rng, r: &mut Record) {
    let z = format!("{}{}", rng.int(1, 9), rng.digits(4));
    match rng.below(5) {
        0 => r
            .say("my ZIP is ")
            .look_alike(Family::Address, "zip alone", &z)
            .say("."),
        1 => r
            .say("zip code ")
            .look_alike(Family::Address, "zip alone", &z),
        2 => {
            let z4 = format!("{z}-{}", rng.digits(4));
            r.say("ZIP+4 ")
                .look_alike(Family::Address, "zip alone", &z4)
        }
        3 => r
            .say("the postal code ")
            .look_alike(Family::Address, "zip alone", &z)
            .say(" covers our area"),
        _ => r
            .say("is ")
            .look_alike(Family::Address, "zip alone", &z)
            .say(" in your service area?"),
    };
}

// ---------------------------------------------------------------------------------------------
// Dates of birth

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

fn ordinal(d: u32) -> &'static str {
    match d {
        1 | 21 | 31 => "st",
        2 | 22 => "nd",
        3 | 23 => "rd",
        _ => "th",
    }
}

/// A date in one of many written forms; every number and the month name are secret.
fn date(rng: &mut Rng, family: Family, years: (u32, u32)) -> Item {
    let (y, m, d) = (rng.int(years.0, years.1), rng.int(1, 12), rng.int(1, 28));
    let month = MONTHS[(m - 1) as usize];
    let short = &month[..3];
    let mut item = Item::new(family, "");
    let form = match rng.below(20) {
        0 => {
            item.digits_secret(&format!("{m:02}/{d:02}/{y}"));
            "mm/dd/yyyy"
        }
        1 => {
            item.digits_secret(&format!("{m}/{d}/{y}"));
            "m/d/yyyy"
        }
        2 => {
            item.digits_secret(&format!("{m}/{d}/{:02}", y % 100));
            "m/d/yy"
        }
        3 => {
            item.digits_secret(&format!("{d:02}/{m:02}/{y}"));
            "dd/mm/yyyy"
        }
        4 => {
            item.digits_secret(&format!("{y}-{m:02}-{d:02}"));
            "iso"
        }
        5 => {
            item.digits_secret(&format!("{d:02}.{m:02}.{y}"));
            "dd.mm.yyyy"
        }
        6 => {
            item.digits_secret(&format!("{m:02}-{d:02}-{y}"));
            "mm-dd-yyyy"
        }
        7 => {
            item.digits_secret(&format!("{y}/{m:02}/{d:02}"));
            "yyyy/mm/dd"
        }
        8 => {
            item.secret(month)
                .plain(" ")
                .secret(&d.to_string())
                .plain(", ")
                .secret(&y.to_string());
            "Month d, yyyy"
        }
        9 => {
            item.secret(short)
                .plain(" ")
                .secret(&d.to_string())
                .plain(" ")
                .secret(&y.to_string());
            "Mon d yyyy"
        }
        10 => {
            item.secret(short)
                .plain(". ")
                .secret(&d.to_string())
                .plain(", ")
                .secret(&y.to_string());
            "Mon. d, yyyy"
        }
        11 => {
            item.secret(&d.to_string())
                .plain(" ")
                .secret(month)
                .plain(" ")
                .secret(&y.to_string());
            "d Month yyyy"
        }
        12 => {
            item.secret(&format!("{d}{}", ordinal(d)))
                .plain(" ")
                .secret(month)
                .plain(" ")
                .secret(&y.to_string());
            "dth Month yyyy"
        }
        13 => {
            item.plain("the ")
                .secret(&format!("{d}{}", ordinal(d)))
                .plain(" of ")
                .secret(month)
                .plain(", ")
                .secret(&y.to_string());
            "the dth of Month, yyyy"
        }
        14 => {
            item.secret(month)
                .plain(" ")
                .secret(&format!("{d}{}", ordinal(d)))
                .plain(", ")
                .secret(&y.to_string());
            "Month dth, yyyy"
        }
        15 => {
            item.secret(&format!("{d:02}"))
                .plain("-")
                .secret(short)
                .plain("-")
                .secret(&y.to_string());
            "dd-Mon-yyyy"
        }
        16 => {
            item.secret(&month.to_lowercase())
                .plain(" ")
                .secret(&d.to_string())
                .plain(" ")
                .secret(&y.to_string());
            "month d yyyy lowercase"
        }
        17 => {
            item.secret(&d.to_string())
                .plain(" ")
                .secret(short)
                .plain(" ")
                .secret(&y.to_string());
            "d Mon yyyy"
        }
        18 => {
            item.digits_secret(&format!("{d}.{m}.{y}"));
            "d.m.yyyy"
        }
        _ => {
            item.digits_secret(&format!("{m}-{d}-{:02}", y % 100));
            "m-d-yy"
        }
    };
    item.form = form;
    item.take()
}

const DOB_T: &[&str] = &[
    "I was born on {}.",
    "DOB: {}",
    "my date of birth is {}",
    "Date of birth {} — please double check it.",
    "birth date {}",
    "Birthdate: {}",
    "b. {}",
    "D.O.B. {}",
    "born {} in Ohio",
    "{} is my date of birth.",
    "{} (DOB)",
    "my son was born {}, right before the move.",
    "can you confirm your date of birth? {}",
    "my date of birth, for the record, is {}.",
    "DOB {} - verified",
    "patient dob: {}",
    "she was born on {} at St. Mary's.",
];

const DATE_LOOK_ALIKE_T: &[&str] = &[
    "the appointment is on {}.",
    "invoice dated {}",
    "it's due {}",
    "we met on {} at the conference.",
    "the deadline is {}.",
    "I started the job on {}",
    "the card expires {}",
    "my son was born last week; his checkup is on {}.",
    "the policy renews {}",
    "we closed on the house {}.",
];

// ---------------------------------------------------------------------------------------------
// E-mail

const NAMES: &[&str] = &[
    "ann", "maria", "jose", "wei", "priya", "tom", "dana", "kwame", "sofia", "liam", "noor",
    "emma", "aiden", "yuki", "fatima", "lucas", "chloe", "mateo", "grace", "omar", "hannah",
    "o'neil", "zoe",
];
const SURNAMES: &[&str] = &[
    "lee", "garcia", "smith", "nguyen", "patel", "okafor", "johnson", "kim", "rossi", "mueller",
    "silva", "cohen", "brown", "tanaka", "haddad", "walsh", "novak", "moreau", "jensen", "reyes",
];
const EMAIL_DOMAINS: &[&str] = &[
    "gmail.com",
    "yahoo.com",
    "outlook.com",
    "icloud.com",
    "proton.me",
    "example.org",
    "acme-corp.io",
    "mail.uni-bonn.de",
    "company.co.uk",
    "health.example.net",
    "cs.dept.state.edu",
    "studio.photography",
    "firm.law",
    "post.example.com.au",
];

fn email(rng: &mut Rng) -> Item {
    let (f, l) = (rng.pick(NAMES), rng.pick(SURNAMES));
    let domain = rng.pick(EMAIL_DOMAINS);
    let n = rng.int(1, 1999);
    let local = match rng.below(8) {
        0 => format!("{f}.{l}"),
        1 => format!("{}{l}{n}", &f[..1]),
        2 => format!("{f}+{}", rng.pick(&["work", "news", "shop", "tax2024"])),
        3 => format!("{f}_{l}"),
        4 => format!("{f}-{l}"),
        5 => format!("{l}.{f}{n}"),
        6 => format!("{f}.{l}+{}", rng.pick(&["billing", "x"])),
        _ => format!("{f}{n}"),
    };
    let mut item = Item::new(Family::Email, "plain");
    match rng.below(12) {
        0 => {
            item.form = "spelled at/dot";
            item.secret(f).plain(" dot ").secret(l).plain(" at ");
            let labels: Vec<&str> = domain.split('.').collect();
            for (i, w) in labels.iter().enumerate() {
                if i > 0 {
                    item.plain(" dot ");
                }
                if i + 1 == labels.len() {
                    item.plain(w);
                } else {
                    item.secret(w);
                }
            }
        }
        1 => {
            item.form = "bracketed [at]";
            item.secret(&local).plain("[at]");
            let labels: Vec<&str> = domain.split('.').collect();
            for (i, w) in labels.iter().enumerate() {
                if i > 0 {
                    item.plain("[dot]");
                }
                if i + 1 == labels.len() {
                    item.plain(w);
                } else {
                    item.secret(w);
                }
            }
        }
        2 => {
            item.form = "uppercase";
            item.secret(&local.to_uppercase())
                .plain("@")
                .secret(&domain.to_uppercase());
        }
        3 => {
            item.form = "capitalised";
            let cap = |s: &str| {
                let mut c = s.chars();
                c.next()
                    .map(|h| h.to_uppercase().collect::<String>() + c.as_str())
                    .unwrap_or_default()
            };
            item.secret(&cap(&local)).plain("@").secret(domain);
        }
        _ => {
            item.secret(&local).plain("@").secret(domain);
        }
    }
    item.take()
}

const EMAIL_T: &[&str] = &[
    "email me at {}.",
    "my login is {}",
    "I sent it from {}, check spam",
    "please update the contact email to {}!",
    "<{}>",
    "mailto:{}",
    "{} is my work address",
    "it's {}, all lowercase",
    "(cc {})",
    "reply to {}; the old inbox is full",
    "Email: {}",
];

const EMAIL_LOOK_ALIKES: &[&str] = &[
    "tag @support on the forum",
    "the icon is logo@2x.png in the assets folder",
    "ping the @channel when it's done",
    "meet me at example.com's booth",
    "the package is @types/node",
    "use the hero@3x.jpg version for retina",
    "annotate it with @Override",
    "it's at 5pm at the office",
];

// ---------------------------------------------------------------------------------------------
// Everyday numbers

fn everyday(rng: &mut Rng, r: &mut Record) {
    let (family, category, text) = match rng.below(16) {
        0 => (
            Family::Phone,
            "cued phone-shaped identifier",
            format!(
                "{} {}",
                rng.pick(&[
                    "order",
                    "order number",
                    "tracking no.",
                    "case #",
                    "ticket",
                    "part number",
                    "serial",
                    "reference",
                    "invoice",
                    "confirmation code",
                    "PO",
                    "model",
                    "SKU",
                ]),
                {
                    let shape = rng.pick(&[
                        "NDD-NDD-DDDD",
                        "NDD.NDD.DDDD",
                        "NDDNDDDDDD",
                        "DDDDD DDDDD",
                        "DDD-DDDD",
                        "DDDD DDDD DDDD",
                    ]);
                    rng.fill(shape)
                }
            ),
        ),
        1 => (Family::Phone, "isbn", isbn(rng)),
        2 => (
            Family::Ip,
            "oid",
            format!("1.3.6.1.4.1.{}.{}", rng.int(100, 99999), rng.int(1, 9)),
        ),
        3 => (
            Family::Ip,
            "time",
            format!(
                "{:02}:{:02}:{:02}",
                rng.int(0, 23),
                rng.int(0, 59),
                rng.int(0, 59)
            ),
        ),
        4 => (
            Family::Ip,
            "mac",
            format!(
                "00:1A:{:02X}:{:02X}:{:02X}:5E",
                rng.int(0, 255),
                rng.int(0, 255),
                rng.int(0, 255)
            ),
        ),
        5 => (
            Family::Card,
            "cued luhn-failing 16 digits",
            format!(
                "{} {}",
                rng.pick(&[
                    "order",
                    "tracking number",
                    "gift card",
                    "account number",
                    "ref"
                ]),
                group_card(&card_digits(rng, "4", 16, false), rng.pick(&[" ", "", "-"]))
            ),
        ),
        6 => (
            Family::Card,
            "imei",
            format!("IMEI {}", card_digits(rng, "35", 15, true)),
        ),
        7 => (Family::Ssn, "invalid ssn", invalid_ssn(rng)),
        8 => (
            Family::Dob,
            "dosage",
            format!(
                "{} mg twice a day",
                rng.pick(&[5, 10, 20, 50, 100, 250, 500])
            ),
        ),
        9 => (
            Family::Dob,
            "blood pressure",
            format!("BP {}/{}", rng.int(100, 160), rng.int(60, 100)),
        ),
        10 => (
            Family::Card,
            "price",
            format!(
                "${},{:03}.{:02}",
                rng.int(1, 9),
                rng.int(0, 999),
                rng.int(0, 99)
            ),
        ),
        11 => (
            Family::Dob,
            "year alone",
            format!("born in {}", rng.int(1940, 2010)),
        ),
        12 => (
            Family::Phone,
            "count",
            format!(
                "{},{:03},{:03} users",
                rng.int(1, 9),
                rng.int(0, 999),
                rng.int(0, 999)
            ),
        ),
        13 => (
            Family::Dob,
            "time of day",
            format!(
                "{}:{:02} {}",
                rng.int(1, 12),
                rng.int(0, 59),
                rng.pick(&["pm", "am", "PM"])
            ),
        ),
        14 => (
            Family::Phone,
            "range",
            format!("{}-{} weeks", rng.int(1, 4), rng.int(5, 12)),
        ),
        _ => (
            Family::Ip,
            "section",
            format!("section {}", version_quad(rng)),
        ),
    };
    r.look_alike(family, category, &text);
}

fn isbn(rng: &mut Rng) -> String {
    if rng.chance(50) {
        let body = format!("978{}", rng.digits(9));
        let sum: u32 = body
            .bytes()
            .enumerate()
            .map(|(i, c)| u32::from(c - b'0') * if i % 2 == 0 { 1 } else { 3 })
            .sum();
        let check = (10 - sum % 10) % 10;
        let sep = rng.pick(&["-", " "]);
        format!(
            "ISBN {}{sep}{}{sep}{}{sep}{}{sep}{check}",
            &body[..3],
            &body[3..4],
            &body[4..7],
            &body[7..]
        )
    } else {
        let body = rng.digits(9);
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
        format!("ISBN {}-{}-{}-{check}", &body[..1], &body[1..4], &body[4..])
    }
}

fn capitalise_maybe(rng: &mut Rng, s: &str) -> String {
    if rng.chance(30) {
        let mut c = s.chars();
        match c.next() {
            Some(h) => h.to_uppercase().collect::<String>() + c.as_str(),
            None => String::new(),
        }
    } else {
        s.to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// Records

fn plant(rng: &mut Rng, r: &mut Record, family: Family) {
    r.say(speaker(rng));
    match family {
        Family::Phone => {
            let (item, needs_cue) = phone(rng);
            let t = match rng.below(10) {
                0 => PHONE_AFTER,
                1..=3 if !needs_cue => PHONE_PLAIN,
                _ => PHONE_CUED,
            };
            r.fill(rng.pick(t), Slot::Pii(item));
        }
        Family::Ssn => {
            let (item, needs_cue) = ssn(rng);
            let t = match rng.below(10) {
                0 => SSN_AFTER,
                1..=3 if !needs_cue => SSN_PLAIN,
                _ => SSN_CUED,
            };
            r.fill(rng.pick(t), Slot::Pii(item));
        }
        Family::Card => {
            let item = card(rng);
            r.fill(rng.pick(CARD_T), Slot::Pii(item));
        }
        Family::Ip => {
            let item = if rng.chance(55) { ipv4(rng) } else { ipv6(rng) };
            r.fill(rng.pick(IP_T), Slot::Pii(item));
        }
        Family::Address => {
            let item = street_address(rng);
            r.fill(rng.pick(ADDRESS_T), Slot::Pii(item));
        }
        Family::Dob => {
            let item = date(rng, Family::Dob, (1930, 2012));
            r.fill(rng.pick(DOB_T), Slot::Pii(item));
        }
        Family::Email => {
            let item = email(rng);
            r.fill(rng.pick(EMAIL_T), Slot::Pii(item));
        }
    }
}

fn look_alike(rng: &mut Rng, r: &mut Record, family: Family) {
    r.say(speaker(rng));
    match family {
        Family::Ssn => {
            if rng.chance(75) {
                ssn_look_alike(rng, r);
            } else {
                r.say(rng.pick(&[
                    "the code on the box was ",
                    "The form shows ",
                    "I got ",
                    "it printed ",
                ]))
                .look_alike(Family::Ssn, "invalid ssn", &invalid_ssn(rng))
                .say(".");
            }
        }
        Family::Ip => {
            let t = rng.pick(VERSION_T);
            let v = version_quad(rng);
            r.fill(t, Slot::LookAlike(Family::Ip, "version", v));
        }
        Family::Address => {
            if rng.chance(60) {
                let t = rng.pick(ADDRESS_LOOK_ALIKES);
                r.look_alike(Family::Address, "quantity near a street", t);
            } else {
                zip_look_alike(rng, r);
            }
        }
        Family::Dob => {
            let d = date(rng, Family::Dob, (2015, 2027));
            let t = rng.pick(DATE_LOOK_ALIKE_T);
            r.fill(
                t,
                Slot::LookAlike(Family::Dob, "date without birth word", d.text),
            );
        }
        Family::Email => {
            let t = rng.pick(EMAIL_LOOK_ALIKES);
            r.look_alike(Family::Email, "at-sign or dotted name", t);
        }
        Family::Phone | Family::Card => everyday(rng, r),
    }
}

/// `n` records; record `i` plants an identifier of family `i % 7` (or only look-alikes).
pub fn records(seed: u64, n: usize) -> Vec<Record> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mut r = Record::default();
        let primary = Family::ALL[i % Family::ALL.len()];
        let only_look_alikes = rng.chance(30);
        let turns = rng.int(2, 5) as usize;
        let planted_at = rng.below(turns);
        let second = if rng.chance(25) {
            Some(rng.pick(&Family::ALL))
        } else {
            None
        };
        for t in 0..turns {
            if t > 0 {
                r.say(if rng.chance(80) { " " } else { "\n" });
            }
            if t == planted_at && !only_look_alikes {
                plant(&mut rng, &mut r, primary);
                if let Some(f) = second {
                    r.say(" ");
                    plant(&mut rng, &mut r, f);
                }
            } else if rng.chance(55) {
                let f = if rng.chance(50) {
                    primary
                } else {
                    rng.pick(&Family::ALL)
                };
                look_alike(&mut rng, &mut r, f);
            } else {
                r.say(speaker(&mut rng)).say(rng.pick(FILLER));
            }
        }
        if only_look_alikes {
            r.say(" ");
            look_alike(&mut rng, &mut r, primary);
        }
        out.push(r);
    }
    out
}

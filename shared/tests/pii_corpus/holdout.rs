//! Held-out set: intake forms, clinical and case notes, text messages and e-mail signatures.
//!
//! Written apart from the tuning set, with its own vocabulary (streets, cities, names, field
//! labels, identifier nouns) and sentence shapes (labelled fields, third-person notes, terse and
//! lower-case texting, signature blocks), so a rule that only fits the tuning set's phrasing
//! shows up here.

use super::{Family, Item, Record, Rng, Slot};

// ---------------------------------------------------------------------------------------------
// Phone numbers

/// (form, pattern, shape alone is enough). `D` any digit, `N` 2-9, `Z` 1-9; text before `|` may
/// survive.
const PHONE_SHAPES: &[(&str, &str, bool)] = &[
    ("us dashed", "|NDD-NDD-DDDD", true),
    ("us parens nospace", "|(NDD)NDD-DDDD", true),
    ("us dotted", "|NDD.NDD.DDDD", true),
    ("us +1 dotted", "+1 |NDD.NDD.DDDD", true),
    ("us 1 spaced", "1 |NDD NDD DDDD", true),
    ("us spaced dashes", "|NDD - NDD - DDDD", true),
    ("us bare", "|NDDNDDDDDD", false),
    ("us seven", "|NDD DDDD", false),
    ("uk mobile 5-6", "|07NDD DDDDDD", true),
    ("uk mobile +44 4-3-3", "+44 |7NDD DDD DDD", true),
    ("uk landline 4-3-4", "|0113 DDD DDDD", true),
    ("uk +44 (0) 3-4-4", "+44 (0)|121 DDD DDDD", true),
    ("de +49 (0) mobile", "+49 (0) |17N DDDDDDD", true),
    ("de munich 3-7", "|089 DDDDDDD", true),
    ("de hamburg dashed", "|040-DDDD DDDD", true),
    ("fr mobile +33", "+33 |6 DD DD DD DD", true),
    ("fr landline dotted", "|04.DD.DD.DD.DD", true),
    ("in +91 5-5", "+91 |9DDDD DDDDD", true),
    ("in 5-5 no prefix", "|8DDDD DDDDD", true),
    ("in 0 + 5-5", "|0NDDDD DDDDD", true),
    ("in (+91) dashed", "(+91) |9DDDD-DDDDD", true),
    ("in bangalore +91", "+91 |80 DDDD DDDD", true),
    ("in bare", "|7DDDDDDDDD", false),
    ("au +61 (0)", "+61 (0)|4 DDDD DDDD", true),
    ("au mobile 4-3-3", "|04DD DDD DDD", true),
    ("au sydney", "|(02) DDDD DDDD", true),
    ("br +55 5-4", "+55 |21 9DDDD DDDD", true),
    ("br (xx) 5-4", "|(11) 9DDDD-DDDD", true),
    ("jp (0x0)", "|(090) DDDD-DDDD", true),
    ("jp osaka", "|06-DDDD-DDDD", true),
    ("mx +52 (xx)", "+52 |(81) DDDD DDDD", true),
    ("mx 2-4-4", "|81 DDDD DDDD", true),
    ("cn +86 dashed", "+86-|10-DDDD-DDDD", true),
    ("cn 0086", "0086 |13N DDDD DDDD", true),
    ("cn 3-4-4", "|18N DDDD DDDD", true),
    ("kr +82", "+82-|2-DDD-DDDD", true),
    ("ph +63", "+63 |917 DDD DDDD", true),
    ("pk 4-7", "|0300-DDDDDDD", true),
    ("pk +92", "+92 |300 DDDDDDD", true),
    ("tr +90", "+90 |532 DDD DD DD", true),
    ("pl +48", "+48 |601 DDD DDD", true),
    ("ch 3-3-2-2", "|079 DDD DD DD", true),
    ("ch +41", "+41 |79 DDD DD DD", true),
    ("se mixed", "|070-DDD DD DD", true),
    ("nz mobile", "|021 DDD DDDD", true),
    ("ar +54 9", "+54 9 |11 DDDD-DDDD", true),
    ("co +57", "+57 |300 DDDDDDD", true),
    ("eg +20", "+20 |10 DDDD DDDD", true),
];

fn phone_number(rng: &mut Rng) -> (Item, bool) {
    let (form, pattern, shape_enough) = rng.pick(PHONE_SHAPES);
    let text = rng.fill(pattern);
    let (prefix, number) = text.split_once('|').expect("pattern marks its prefix");
    let mut item = Item::new(Family::Phone, form);
    item.plain(prefix).digits_secret(number);
    if shape_enough && rng.chance(8) {
        let x = rng.digits(3);
        let label = rng.pick(&[" x", " Ext ", " ext:", " (ext. "]);
        item.plain(label).secret(&x);
        if label.contains('(') {
            item.plain(")");
        }
    }
    (item.take(), shape_enough)
}

/// Sentences with a phone word near the number.
const PHONE_SAID: &[&str] = &[
    "new # is {}",
    "txt me @ {}",
    "u can reach me on {}",
    "Pt's daughter (contact {}) will pick her up.",
    "Mobile no: {}",
    "call back requested on {}",
    "Caller left a callback number of {}.",
    "whatsapp no {} pls",
    "ph no {}",
    "cell# {}",
    "Preferred phone: {}",
    "Phone (home): {}",
    "Work phone {} (voicemail ok)",
    "She asked us to phone her daughter at {} instead.",
    "Reached pt by telephone at {}.",
    "my work line's {}",
    "M: {}",
    "T: {}",
    "Tel/Fax: {}",
    "best contact number {}",
    "ring me back on {} when you get this",
    "office line - {}",
];

/// Sentences with no phone word, for shapes that say phone by themselves.
const PHONE_UNSAID: &[&str] = &[
    "lmk if {} doesn't work",
    "Jane Doe | Operations | {}",
    "({})",
    "reachable at {} between 9 and 5",
    "try {} after lunch",
    "Pt gave {} as the number for her son.",
];

// ---------------------------------------------------------------------------------------------
// Social security numbers

fn ssn_parts(rng: &mut Rng) -> [String; 3] {
    let area = loop {
        let a = rng.int(1, 899);
        if a != 666 {
            break a;
        }
    };
    [
        format!("{area:03}"),
        format!("{:02}", rng.int(1, 99)),
        format!("{:04}", rng.int(1, 9999)),
    ]
}

fn social(rng: &mut Rng) -> (Item, bool) {
    let [a, g, s] = ssn_parts(rng);
    let (form, sep, shape_enough) = rng.pick(&[
        ("dashes", "-", true),
        ("dashes", "-", true),
        ("spaces", " ", true),
        ("no separator", "", false),
    ]);
    let mut item = Item::new(Family::Ssn, form);
    item.secret(&a).plain(sep).secret(&g).plain(sep).secret(&s);
    (item.take(), shape_enough)
}

const SSN_SAID: &[&str] = &[
    "Social Sec #: {}",
    "SSN {} on file",
    "pt provided SSN {} for billing",
    "Taxpayer ID (SSN): {}",
    "soc sec no. {}",
    "her social security # is {}",
    "ssn - {}",
    "Social: {}",
    "the SSA letter lists {} as my social security number",
    "{} is the SSN on the W-4",
];

const SSN_UNSAID: &[&str] = &[
    "Verified identity with {}.",
    "numbers on the card: {}",
    "she read {} off the card over the phone",
];

// ---------------------------------------------------------------------------------------------
// Payment cards

fn luhn_complete(body: &str) -> char {
    let mut sum = 0;
    for (i, c) in body.bytes().rev().enumerate() {
        let mut d = u32::from(c - b'0');
        if i % 2 == 0 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    char::from(b'0' + ((10 - sum % 10) % 10) as u8)
}

fn payment_card(rng: &mut Rng) -> Item {
    let (form, start, len) = rng.pick(&[
        ("visa", "4", 16),
        ("visa", "4", 16),
        ("mc", "51", 16),
        ("mc", "2720", 16),
        ("amex", "34", 15),
        ("discover", "65", 16),
        ("unionpay", "62", 16),
    ]);
    let mut n = format!("{start}{}", rng.digits(len - 1 - start.len()));
    n.push(luhn_complete(&n));
    let text = match (rng.below(3), len) {
        (0, 15) => format!("{} {} {}", &n[..4], &n[4..10], &n[10..]),
        (0, _) => format!("{} {} {} {}", &n[..4], &n[4..8], &n[8..12], &n[12..]),
        (1, 16) => format!("{}-{}-{}-{}", &n[..4], &n[4..8], &n[8..12], &n[12..]),
        _ => n.clone(),
    };
    let mut item = Item::new(Family::Card, form);
    item.digits_secret(&text);
    item.take()
}

const CARD_SAID: &[&str] = &[
    "card no. {}",
    "cc#{}",
    "Paid by MC {}.",
    "pt's card {} was declined",
    "Billing card: {}",
    "{} exp 03/28 cvv 123",
    "the number on the front is {}",
];

// ---------------------------------------------------------------------------------------------
// Network addresses

fn network_address(rng: &mut Rng) -> Item {
    let mut item = Item::new(Family::Ip, "");
    if rng.chance(60) {
        let o = [
            rng.int(1, 223),
            rng.int(0, 255),
            rng.int(0, 255),
            rng.int(1, 254),
        ];
        item.form = "v4";
        item.secret(&o[0].to_string());
        for x in &o[1..] {
            item.plain(".").secret(&x.to_string());
        }
        if rng.chance(20) {
            item.form = "v4 port";
            item.plain(&format!(":{}", rng.int(1024, 65535)));
        }
    } else {
        let groups: Vec<String> = (0..8)
            .map(|_| format!("{:04x}", rng.next() & 0xffff))
            .collect();
        match rng.below(3) {
            0 => {
                item.form = "v6 full zero-padded";
                for (i, g) in groups.iter().enumerate() {
                    if i > 0 {
                        item.plain(":");
                    }
                    item.secret(g);
                }
            }
            1 => {
                item.form = "v6 doc compressed";
                item.plain("2001:db8::")
                    .secret(&groups[3])
                    .plain(":")
                    .secret(&groups[7]);
            }
            _ => {
                item.form = "v6 bracketed port";
                item.plain("[2001:db8:")
                    .secret(&groups[2])
                    .plain("::")
                    .secret(&groups[6])
                    .plain("]:8443");
            }
        }
    }
    item.take()
}

const IP_SAID: &[&str] = &[
    "failed login for admin from {} port 22",
    "src={} dst=internal",
    "client {} hit the rate limit",
    "IP addr {}",
    "blocked {} after 5 attempts",
    "the VPN gave me {} today",
    "Remote address: {}",
];

// ---------------------------------------------------------------------------------------------
// Postal addresses

const ROADS: &[&str] = &[
    "Blue Spruce",
    "Country Club",
    "MLK",
    "Dogwood",
    "Chestnut Hill",
    "Buena Vista",
    "Kings",
    "Ironwood",
    "Quail Run",
    "Harbor View",
    "Mill Pond",
    "Birch",
    "Sycamore",
    "7th",
    "22nd",
    "Grand",
    "Meadowbrook",
    "Stonegate",
];

const ROAD_TYPES: &[&str] = &[
    "St", "St.", "Street", "Ave", "Ave.", "Avenue", "Rd", "Road", "Dr", "Dr.", "Drive", "Ln",
    "Lane", "Blvd", "Ct", "Pl", "Way", "Pkwy", "Hwy", "Cir", "Ter", "Trl", "Cove", "Bend", "Pass",
    "Walk", "Row", "Plaza", "Crescent", "Expy", "Sq",
];

/// (city, state abbreviation, state, ZIP).
const TOWNS: &[(&str, &str, &str, &str)] = &[
    ("Oklahoma City", "OK", "Oklahoma", "73102"),
    ("Saint Louis", "MO", "Missouri", "63101"),
    ("Colorado Springs", "CO", "Colorado", "80903"),
    ("Jersey City", "NJ", "New Jersey", "07302"),
    ("Virginia Beach", "VA", "Virginia", "23451"),
    ("Bowling Green", "KY", "Kentucky", "42101"),
    ("Cedar Rapids", "IA", "Iowa", "52401"),
    ("Eau Claire", "WI", "Wisconsin", "54701"),
    ("Lake Havasu City", "AZ", "Arizona", "86403"),
    ("Scranton", "PA", "Pennsylvania", "18503"),
    ("Tacoma", "WA", "Washington", "98402"),
    ("Montpelier", "VT", "Vermont", "05602"),
    ("Savannah", "GA", "Georgia", "31401"),
    ("Myrtle Beach", "SC", "South Carolina", "29577"),
    ("Fargo", "ND", "North Dakota", "58102"),
    ("Dover", "DE", "Delaware", "19901"),
    ("Cheyenne", "WY", "Wyoming", "82001"),
    ("Hartford", "CT", "Connecticut", "06103"),
    ("Knoxville", "TN", "Tennessee", "37902"),
    ("Billings", "MT", "Montana", "59101"),
];

fn words_secret(item: &mut Item, s: &str) {
    for (i, w) in s.split(' ').enumerate() {
        if i > 0 {
            item.plain(" ");
        }
        item.secret(w);
    }
}

fn postal_address(rng: &mut Rng) -> Item {
    let mut item = Item::new(Family::Address, "");
    let mut form = Vec::new();
    let unit_first = rng.chance(5);
    let unit = |rng: &mut Rng| -> (String, String) {
        let label = rng.pick(&["Apt #", "Unit #", "Apt ", "Ste ", "Suite ", "#", "Unit "]);
        let value = match rng.below(4) {
            0 => format!("{}{}", rng.int(1, 25), rng.pick(&["F", "R", "L", "E"])),
            1 => rng.int(101, 950).to_string(),
            2 => rng.pick(&["A", "B", "C", "D"]).to_string(),
            _ => rng.int(1, 60).to_string(),
        };
        (label.to_string(), value)
    };
    if unit_first {
        let (label, value) = unit(rng);
        item.plain(&label).secret(&value).plain(", ");
        form.push("unit first");
    }
    item.secret(&rng.int(2, 48_999).to_string()).plain(" ");
    words_secret(&mut item, rng.pick(ROADS));
    item.plain(" ").plain(rng.pick(ROAD_TYPES));
    if !unit_first && rng.chance(35) {
        let (label, value) = unit(rng);
        item.plain(rng.pick(&[" ", ", "]))
            .plain(&label)
            .secret(&value);
        form.push("unit");
    }
    let (city, abbr, state, zip) = rng.pick(TOWNS);
    match rng.below(8) {
        0 => {
            item.plain(", ");
            words_secret(&mut item, city);
            item.plain(" ").secret(abbr).plain(" ").secret(zip);
            form.push("city ST zip");
        }
        1 => {
            item.plain(" ");
            words_secret(&mut item, city);
            item.plain(" ").secret(abbr).plain(" ").secret(zip);
            form.push("no commas");
        }
        2 => {
            item.plain(", ");
            words_secret(&mut item, city);
            item.plain(", ");
            words_secret(&mut item, state);
            form.push("state name no zip");
        }
        3 => {
            item.plain("\n");
            words_secret(&mut item, city);
            item.plain(", ").secret(abbr).plain(" ").secret(zip);
            form.push("two lines");
        }
        4 => {
            item.plain(", ");
            words_secret(&mut item, city);
            item.plain(" ");
            words_secret(&mut item, state);
            item.plain(" ").secret(zip);
            form.push("state name zip");
        }
        5 => {
            item.plain(" ");
            words_secret(&mut item, city);
            item.plain(", ");
            words_secret(&mut item, state);
            form.push("no comma before city, state name");
        }
        6 => {
            item.plain(", ");
            words_secret(&mut item, city);
            item.plain(", ").secret(abbr);
            form.push("city, ST");
        }
        _ => {
            form.push("street only");
        }
    }
    let mut form = form.join(" + ");
    if rng.chance(10) {
        item.lowercase();
        form.push_str(" lower");
    } else if rng.chance(6) {
        item.uppercase();
        form.push_str(" upper");
    }
    item.form = Box::leak(form.into_boxed_str());
    item.take()
}

const ADDRESS_SAID: &[&str] = &[
    "Pt resides at {}.",
    "shipping to {} (leave at door)",
    "addr: {}",
    "Mailing address - {}",
    "new place is {}!!",
    "my addy is {}",
    "Relocated to {} per intake.",
    "{}",
    "Return label goes to {}, attn: receiving.",
    "she's staying with her sister at {} for now",
];

// ---------------------------------------------------------------------------------------------
// Dates of birth

const MONTH_NAMES: &[&str] = &[
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const MONTH_FULL: &[&str] = &[
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

fn calendar_date(rng: &mut Rng, years: (u32, u32), family: Family) -> Item {
    let (y, m, d) = (rng.int(years.0, years.1), rng.int(1, 12), rng.int(1, 28));
    let mut item = Item::new(family, "");
    item.form = match rng.below(10) {
        0 => {
            item.digits_secret(&format!("{m}/{d}/{y}"));
            "m/d/y"
        }
        1 => {
            item.digits_secret(&format!("{y}-{m:02}-{d:02}"));
            "y-m-d"
        }
        2 => {
            item.digits_secret(&format!("{d:02}.{m:02}.{y}"));
            "d.m.y"
        }
        3 => {
            item.secret(&d.to_string())
                .plain(" ")
                .secret(MONTH_NAMES[m as usize - 1])
                .plain(" ")
                .secret(&y.to_string());
            "d Mon y"
        }
        4 => {
            let suffix = match d {
                1 | 21 => "st",
                2 | 22 => "nd",
                3 | 23 => "rd",
                _ => "th",
            };
            item.secret(MONTH_NAMES[m as usize - 1])
                .plain(" ")
                .secret(&format!("{d}{suffix}"))
                .plain(" ")
                .secret(&y.to_string());
            "Mon dth y"
        }
        5 => {
            item.secret(MONTH_FULL[m as usize - 1])
                .plain(" ")
                .secret(&d.to_string())
                .plain(", ")
                .secret(&y.to_string());
            "Month d, y"
        }
        6 => {
            item.secret(&format!("{d:02}"))
                .plain("-")
                .secret(MONTH_NAMES[m as usize - 1])
                .plain("-")
                .secret(&y.to_string());
            "dd-Mon-y"
        }
        7 => {
            item.digits_secret(&format!("{m:02}/{d:02}/{:02}", y % 100));
            "mm/dd/yy"
        }
        8 => {
            item.digits_secret(&format!("{y}/{m}/{d}"));
            "y/m/d"
        }
        _ => {
            item.secret(&d.to_string())
                .plain(" ")
                .secret(MONTH_FULL[m as usize - 1])
                .plain(", ")
                .secret(&y.to_string());
            "d Month, y"
        }
    };
    item.take()
}

const DOB_SAID: &[&str] = &[
    "DOB {}",
    "D.O.B: {}",
    "born {}",
    "birthdate {}",
    "date of birth: {}",
    "bday {}",
    "Born: {}",
    "(DOB {})",
    "age 36 (DOB {})",
    "pt's birth date is listed as {}",
    "Date of Birth - {}",
    "{} (date of birth)",
];

// ---------------------------------------------------------------------------------------------
// E-mail addresses

const PEOPLE: &[(&str, &str)] = &[
    ("jordan", "whitfield"),
    ("mei", "zhang"),
    ("rahul", "iyer"),
    ("beatriz", "costa"),
    ("tobias", "lindqvist"),
    ("amara", "nwosu"),
    ("declan", "obrien"),
    ("ines", "fernandes"),
    ("kai", "muller"),
    ("leila", "farah"),
];
const HOSTS: &[&str] = &[
    "dept.company.org",
    "Sub.Example.CO.UK",
    "gmail.com",
    "hospital-network.org",
    "fastmail.fm",
    "web.de",
    "orange.fr",
    "mail.example.travel",
];

fn mailbox(rng: &mut Rng) -> Item {
    let (first, last) = rng.pick(PEOPLE);
    let host = rng.pick(HOSTS);
    let local = match rng.below(6) {
        0 => format!("{}{last}", &first[..1]),
        1 => format!("{first}.{last}"),
        2 => format!("{first}+{}", rng.pick(&["ebay", "clinic", "2025"])),
        3 => format!("{}.{}", first.to_uppercase(), last.to_uppercase()),
        4 => format!("{last}{}", rng.int(70, 99)),
        _ => format!("{first}_{}", &last[..1]),
    };
    let mut item = Item::new(Family::Email, "");
    match rng.below(10) {
        0 => {
            item.form = "at/dot words";
            let (label, tld) = host.rsplit_once('.').expect("host has a dot");
            item.secret(&local)
                .plain(" at ")
                .secret(&label.replace('.', " dot "))
                .plain(" dot ")
                .plain(tld);
        }
        1 => {
            item.form = "(at)(dot)";
            let (label, tld) = host.rsplit_once('.').expect("host has a dot");
            item.secret(&local)
                .plain("(at)")
                .secret(&label.replace('.', "(dot)"))
                .plain("(dot)")
                .plain(tld);
        }
        _ => {
            item.form = "address";
            item.secret(&local).plain("@").secret(host);
        }
    }
    item.take()
}

const EMAIL_SAID: &[&str] = &[
    "email: <{}>",
    "E-mail {}",
    "pls send the invoice to {} thx",
    "Pt prefers contact via {}.",
    "{}",
    "cc'ing {} on this",
    "her portal login is {}",
];

// ---------------------------------------------------------------------------------------------
// Look-alikes

const ID_NOUNS: &[&str] = &[
    "P/N",
    "S/N",
    "LOT:",
    "Batch No",
    "Mfr part #",
    "item code",
    "Order ID",
    "Case No.",
    "Ref:",
    "Tracking #",
    "RMA",
    "Work order",
    "Ticket ID",
    "Document no.",
    "Permit",
    "Claim number",
    "Lot no.",
    "Part#",
    "Serial number",
    "Model no.",
    "Catalog #",
    "Job",
];

fn look_alike(rng: &mut Rng, r: &mut Record) {
    match rng.below(12) {
        0 | 1 => {
            let [a, g, s] = ssn_parts(rng);
            let noun = rng.pick(ID_NOUNS);
            let sep = rng.pick(&["-", "-", " "]);
            r.say(noun).say(" ").look_alike(
                Family::Ssn,
                "identifier in 3-2-4 shape",
                &format!("{a}{sep}{g}{sep}{s}"),
            );
        }
        2 => {
            let noun = rng.pick(ID_NOUNS);
            let shape = rng.pick(&[
                "NDD-NDD-DDDD",
                "DDDDD DDDDD",
                "NDD.NDD.DDDD",
                "DDDD-DDD-DDD",
            ]);
            let number = rng.fill(shape);
            r.say(noun)
                .say(" ")
                .look_alike(Family::Phone, "identifier in phone shape", &number);
        }
        3 | 4 => {
            let v = format!(
                "{}.{}.{}.{}",
                rng.int(1, 40),
                rng.int(0, 9),
                rng.int(0, 255),
                rng.int(0, 255)
            );
            let t = rng.pick(&[
                "running v{} since Monday",
                "Version {} installed",
                "ver {} still has the bug",
                "Build: {}",
                "update {} rolled out",
                "firmware version {}",
                "(v {})",
                "kernel {} panics on boot",
                "SDK {} is required",
                "the {} hotfix",
                "driver {} from the vendor site",
                "release v{} notes",
                "upgraded to {} last night (build)",
            ]);
            r.fill(t, Slot::LookAlike(Family::Ip, "version string", v));
        }
        5 => {
            let z = rng.pick(&["60614", "10001-1234", "94110", "30301", "02116-4321"]);
            let t = rng.pick(&[
                "zip {}",
                "ZIP code: {}",
                "deliveries to {} only",
                "(postal {})",
            ]);
            r.fill(
                t,
                Slot::LookAlike(Family::Address, "zip alone", z.to_string()),
            );
        }
        6 => {
            let t = rng.pick(&[
                "Suite 200 is upstairs",
                "take Route 9 north",
                "mile 12 of the trail",
                "we have 3 Main St locations",
                "the Boeing 747 was late",
                "Platform 4 for the express",
                "Apollo 13 is on tonight",
                "I walked 2 miles along Birch Road",
                "about 10 minutes past Kings Highway",
            ]);
            r.look_alike(Family::Address, "place words near numbers", t);
        }
        7 => {
            let d = calendar_date(rng, (2019, 2027), Family::Dob);
            let t = rng.pick(&[
                "last visit {}",
                "scheduled for {}",
                "shipped {}",
                "Follow-up: {}",
                "signed the lease on {}",
                "refund issued {}",
            ]);
            r.fill(t, Slot::LookAlike(Family::Dob, "dated event", d.text));
        }
        8 => {
            let t = match rng.below(6) {
                0 => format!("UPC 0 {} {} {}", rng.digits(5), rng.digits(5), rng.digit()),
                1 => format!("routing number {}", rng.fill("0ZDDDDDDD")),
                2 => format!("NPI {}", rng.fill("1DDDDDDDDD")),
                3 => format!("MRN {}", rng.digits(8)),
                4 => format!("PO {}", rng.fill("45DDDDDDDD")),
                _ => format!("invoice {}-{}", rng.int(2019, 2026), rng.digits(5)),
            };
            r.look_alike(Family::Phone, "record number", &t);
        }
        9 => {
            let t = match rng.below(5) {
                0 => format!("A1c {}.{}%", rng.int(5, 9), rng.int(0, 9)),
                1 => format!("{}/{} mmHg", rng.int(95, 170), rng.int(55, 105)),
                2 => format!("{} mcg daily", rng.pick(&[25, 50, 75, 88, 112])),
                3 => format!("{:.1} kg", f64::from(rng.int(400, 1200)) / 10.0),
                _ => format!("{}:{:02}", rng.int(1, 12), rng.int(0, 59)),
            };
            r.look_alike(Family::Dob, "clinical reading", &t);
        }
        10 => {
            let t = rng.pick(&[
                "thumbnail@2x.png",
                "@mention the on-call",
                "find us at booth 4 dot 2",
                "user@localhost",
            ]);
            r.look_alike(Family::Email, "at-sign look-alike", t);
        }
        _ => {
            let n = format!(
                "{} {} {} {}",
                rng.fill("4DDD"),
                rng.digits(4),
                rng.digits(4),
                rng.digits(4)
            );
            // Only a number that fails the Luhn check is a fair look-alike.
            let digits: String = n.chars().filter(char::is_ascii_digit).collect();
            let body = &digits[..15];
            let bad = luhn_complete(body) != digits.chars().last().unwrap_or('x');
            if bad {
                r.say("gift card ")
                    .look_alike(Family::Card, "luhn-failing card shape", &n);
            } else {
                r.say("conf ")
                    .look_alike(Family::Card, "luhn-failing card shape", &digits[..12]);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Record shapes

fn spoken(rng: &mut Rng, family: Family) -> (String, Slot) {
    match family {
        Family::Phone => {
            let (item, shape_enough) = phone_number(rng);
            let t = if shape_enough && rng.chance(35) {
                PHONE_UNSAID
            } else {
                PHONE_SAID
            };
            (rng.pick(t).to_string(), Slot::Pii(item))
        }
        Family::Ssn => {
            let (item, shape_enough) = social(rng);
            let t = if shape_enough && rng.chance(30) {
                SSN_UNSAID
            } else {
                SSN_SAID
            };
            (rng.pick(t).to_string(), Slot::Pii(item))
        }
        Family::Card => (
            rng.pick(CARD_SAID).to_string(),
            Slot::Pii(payment_card(rng)),
        ),
        Family::Ip => (
            rng.pick(IP_SAID).to_string(),
            Slot::Pii(network_address(rng)),
        ),
        Family::Address => (
            rng.pick(ADDRESS_SAID).to_string(),
            Slot::Pii(postal_address(rng)),
        ),
        Family::Dob => (
            rng.pick(DOB_SAID).to_string(),
            Slot::Pii(calendar_date(rng, (1931, 2011), Family::Dob)),
        ),
        Family::Email => (rng.pick(EMAIL_SAID).to_string(), Slot::Pii(mailbox(rng))),
    }
}

/// A labelled intake form: the labels are the only context.
fn form(rng: &mut Rng, r: &mut Record, primary: Family) {
    let fields: &[(Family, &[&str])] = &[
        (
            Family::Phone,
            &["Tel", "Mobile #", "Contact", "Home", "Phone"],
        ),
        (
            Family::Address,
            &["Addr", "Street address", "Mailing address", "Residence"],
        ),
        (
            Family::Dob,
            &["Birth date", "D.O.B", "DOB", "Date of birth"],
        ),
        (Family::Ssn, &["SSN", "Social", "SS #"]),
        (Family::Email, &["E-mail", "Email address", "Contact email"]),
    ];
    r.say(rng.pick(&[
        "INTAKE\n",
        "New patient registration\n",
        "Onboarding form | ",
        "",
    ]));
    r.say("Name: ")
        .say(rng.pick(&["R. Alvarez", "Kim Doyle", "T. Okonkwo", "Sam Patel"]));
    for (family, labels) in fields {
        if *family != primary && rng.chance(50) {
            continue;
        }
        r.say(rng.pick(&["\n", " | ", "; "]));
        r.say(rng.pick(labels)).say(": ");
        match family {
            Family::Phone => r.pii(phone_number(rng).0),
            Family::Address => r.pii(postal_address(rng)),
            Family::Dob => r.pii(calendar_date(rng, (1931, 2011), Family::Dob)),
            Family::Ssn => r.pii(social(rng).0),
            _ => r.pii(mailbox(rng)),
        };
    }
    if matches!(primary, Family::Card | Family::Ip) {
        let (t, slot) = spoken(rng, primary);
        r.say("\nNotes: ").fill(&t, slot);
    }
}

/// A terse, mostly lower-case text message.
fn text_message(rng: &mut Rng, r: &mut Record, primary: Family) {
    r.say(rng.pick(&["hey ", "hi! ", "sry ", "ok so ", ""]));
    let (t, slot) = spoken(rng, primary);
    r.fill(&t, slot);
    if rng.chance(50) {
        r.say(rng.pick(&[" ", "\n", " / "]));
        look_alike(rng, r);
    }
    r.say(rng.pick(&[" thx", " ttyl", " :)", "", "."]));
}

/// A case or clinical note in the third person.
fn note(rng: &mut Rng, r: &mut Record, primary: Family) {
    r.say(rng.pick(&[
        "Case note: ",
        "Progress note. ",
        "SUBJECTIVE: ",
        "Call log - ",
        "Ticket update: ",
    ]));
    if rng.chance(50) {
        look_alike(rng, r);
        r.say(". ");
    }
    let (t, slot) = spoken(rng, primary);
    r.fill(&t, slot);
    r.say(rng.pick(&[
        ". Will follow up next week.",
        "; no further concerns.",
        ". ",
        " — see attached.",
        "",
    ]));
    if rng.chance(40) {
        if !r.text.ends_with(' ') {
            r.say(" ");
        }
        look_alike(rng, r);
    }
}

/// An e-mail signature block with a phone, an address and a mailbox.
fn signature(rng: &mut Rng, r: &mut Record) {
    r.say(rng.pick(&["Thanks,\n", "Best regards,\n", "Cheers,\n", "--\n"]));
    r.say(rng.pick(&["Jane Ortiz", "Marcus Bell", "Priya Raman", "Oliver Grant"]));
    r.say("\n");
    r.say(rng.pick(&[
        "Account Manager, Northwind",
        "Clinic Coordinator",
        "Field Services Lead",
    ]));
    r.say("\n");
    r.say(rng.pick(&["M: ", "Mobile: ", "Direct: ", "T ", "Office: "]));
    loop {
        let (item, shape_enough) = phone_number(rng);
        if shape_enough {
            r.pii(item);
            break;
        }
    }
    r.say(rng.pick(&["\n", " | "]));
    r.pii(mailbox(rng));
    r.say("\n");
    r.pii(postal_address(rng));
}

/// Records of the held-out set; record `i` is mostly about family `i % 7`.
pub fn records(seed: u64, n: usize) -> Vec<Record> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let primary = Family::ALL[(i / 3) % Family::ALL.len()];
        let mut r = Record::default();
        match rng.below(20) {
            0..=3 => form(&mut rng, &mut r, primary),
            4..=8 => text_message(&mut rng, &mut r, primary),
            9..=14 => note(&mut rng, &mut r, primary),
            15 => signature(&mut rng, &mut r),
            _ => {
                // Look-alikes only.
                for k in 0..rng.int(1, 3) {
                    if k > 0 {
                        r.say(rng.pick(&[". ", "; ", "\n"]));
                    }
                    look_alike(&mut rng, &mut r);
                }
            }
        }
        out.push(r);
    }
    out
}

//! Fresh set: longer e-mail-style messages, written after the rules were tuned on the other two
//! sets and not used to tune them. Its own vocabulary again (streets, cities, cue phrases, product
//! nouns) and its own shape: a greeting, two to four sentences of prose with identifiers and
//! look-alikes in them, and a sign-off.

use super::{Family, Item, Record, Rng};

const GREETINGS: &[&str] = &[
    "Hi team,",
    "Hello,",
    "Good morning!",
    "Dear support,",
    "Hey there -",
    "To whom it may concern:",
];
const SIGN_OFFS: &[&str] = &[
    "Thanks, Sam",
    "Best, R.",
    "Cheers",
    "Kind regards, Alex",
    "Sent from my phone",
    "",
];
const PROSE: &[&str] = &[
    "I wanted to follow up on last week's conversation.",
    "Sorry for the delay in getting back to you.",
    "Please let me know if anything else is needed.",
    "The last agent said this would be sorted by Friday.",
    "I've attached the screenshots you asked for.",
    "My manager is cc'd so she can keep track.",
];

fn words(item: &mut Item, s: &str) {
    for (i, w) in s.split(' ').enumerate() {
        if i > 0 {
            item.plain(" ");
        }
        item.secret(w);
    }
}

// ---------------------------------------------------------------------------------------------

fn phone(rng: &mut Rng) -> (Item, &'static str) {
    // (form, pattern, sentence)
    let (form, pattern, sentence) = rng.pick(&[
        (
            "bare after call",
            "|NDDNDDDDDD",
            "Please call {} after 4pm.",
        ),
        (
            "bare work line",
            "|NDDNDDDDDD",
            "My work line is {} if email is slow.",
        ),
        (
            "bare reach",
            "|NDDNDDDDDD",
            "You can reach me directly on {}.",
        ),
        (
            "nanp dashes",
            "|NDD-NDD-DDDD",
            "The front desk number is {}.",
        ),
        (
            "nanp parens",
            "|(NDD) NDD-DDDD",
            "I'm at {} most afternoons.",
        ),
        (
            "nanp +1",
            "+1 |NDD-NDD-DDDD",
            "My cell, {}, is the fastest way.",
        ),
        (
            "uk mobile",
            "|07NDD DDDDDD",
            "I'm in London this month, mobile {}.",
        ),
        (
            "uk +44",
            "+44 |7NDD DDDDDD",
            "Ring me on {} while I'm abroad.",
        ),
        ("in 5+5", "|9DDDD DDDDD", "My number in Pune is {}."),
        ("in 6+5", "|09DDDD DDDDD", "The office landline is {}."),
        ("in +91", "+91 |9DDDD DDDDD", "WhatsApp works too: {}."),
        ("de +49", "+49 |30 DDDDDDD", "Our Berlin office: {}."),
        (
            "fr national",
            "|01 DD DD DD DD",
            "Le bureau: {}, ask for Claire.",
        ),
        ("fr +33", "+33 |1 DD DD DD DD", "Paris line {}."),
        ("au parens", "|(02) DDDD DDDD", "The Sydney team is on {}."),
        ("au +61", "+61 |2 DDDD DDDD", "Call the Sydney team on {}."),
        ("br +55", "+55 |21 DDDD-DDDD", "Rio office: {}."),
        ("jp +81", "+81 |3-DDDD-DDDD", "Tokyo desk {}."),
        ("mx +52", "+52 |55 DDDD DDDD", "Mexico City: {}."),
        ("cn +86", "+86 |10 DDDD DDDD", "Beijing office {}."),
        ("es +34", "+34 |91N DDD DDD", "Madrid: {}."),
        ("it +39", "+39 |06 DDDD DDDD", "Rome: {}."),
        ("ru +7", "+7 |495 DDD-DD-DD", "Moscow office {}."),
        ("nanp ext", "|NDD.NDD.DDDD", "Desk phone {} ext. 214."),
    ]);
    let filled = rng.fill(pattern);
    let (cc, rest) = filled.split_once('|').expect("marked");
    let mut item = Item::new(Family::Phone, form);
    item.plain(cc).digits_secret(rest);
    (item.take(), sentence)
}

fn ssn(rng: &mut Rng) -> (Item, &'static str) {
    let area = loop {
        let a = rng.int(1, 899);
        if a != 666 {
            break a;
        }
    };
    let (g, s) = (rng.int(1, 99), rng.int(1, 9999));
    let (form, text, sentence) = match rng.below(5) {
        0 => (
            "dashed cue",
            format!("{area:03}-{g:02}-{s:04}"),
            "For the background check, my SSN is {}.",
        ),
        1 => (
            "spaced cue",
            format!("{area:03} {g:02} {s:04}"),
            "Social security number: {}",
        ),
        2 => (
            "bare cue",
            format!("{area:03}{g:02}{s:04}"),
            "The W-9 lists SS# {} for me.",
        ),
        3 => (
            "dashed neutral",
            format!("{area:03}-{g:02}-{s:04}"),
            "HR typed {} into the wrong field.",
        ),
        _ => (
            "dashed after",
            format!("{area:03}-{g:02}-{s:04}"),
            "{} is my social, please mask it.",
        ),
    };
    let mut item = Item::new(Family::Ssn, form);
    item.digits_secret(&text);
    (item.take(), sentence)
}

fn address(rng: &mut Rng) -> (Item, &'static str) {
    let street = rng.pick(&[
        "Glenwood",
        "Orchard Hill",
        "Cherry Blossom",
        "Bridgeport",
        "Lexington",
        "Rosewood",
        "W 34th",
        "E Colfax",
        "Sunnyside",
        "Old Town",
    ]);
    let suffix = rng.pick(&[
        "Street", "St", "Avenue", "Ave", "Road", "Blvd", "Drive", "Court", "Lane", "Way", "Place",
        "Terrace", "Circle", "Pkwy", "Trail",
    ]);
    let (city, st, state, zip) = rng.pick(&[
        ("Albuquerque", "NM", "New Mexico", "87102"),
        ("Des Moines", "IA", "Iowa", "50309"),
        ("Grand Rapids", "MI", "Michigan", "49503"),
        ("St. Petersburg", "FL", "Florida", "33701"),
        ("Little Rock", "AR", "Arkansas", "72201"),
        ("Fort Collins", "CO", "Colorado", "80521"),
        ("Palm Springs", "CA", "California", "92262"),
        ("Rapid City", "SD", "South Dakota", "57701"),
        ("El Paso", "TX", "Texas", "79901"),
        ("New Orleans", "LA", "Louisiana", "70112"),
        ("Pittsburgh", "PA", "Pennsylvania", "15222"),
        ("Burlington", "VT", "Vermont", "05401"),
    ]);
    let mut item = Item::new(Family::Address, "");
    item.secret(&rng.int(1, 9999).to_string()).plain(" ");
    words(&mut item, street);
    item.plain(" ").plain(suffix);
    let unit = format!("{}{}", rng.int(1, 30), rng.pick(&["A", "B", "C", "D", ""]));
    item.form = match rng.below(6) {
        0 => {
            item.plain(" Apt ").secret(&unit).plain(" ");
            words(&mut item, city);
            item.plain(" ").secret(st).plain(" ").secret(zip);
            "apt, no commas"
        }
        1 => {
            item.plain(", ");
            words(&mut item, city);
            item.plain(", ");
            words(&mut item, state);
            "city, state name"
        }
        2 => {
            item.plain(" Suite ").secret(&unit).plain(", ");
            words(&mut item, city);
            item.plain(", ").secret(st).plain(" ").secret(zip);
            "suite, commas"
        }
        3 => {
            item.plain("\n");
            words(&mut item, city);
            item.plain(", ").secret(st).plain(" ").secret(zip);
            "two lines"
        }
        4 => {
            item.plain(" #").secret(&unit).plain(", ");
            words(&mut item, city);
            item.plain(" ").secret(st);
            "hash unit, city ST"
        }
        _ => {
            item.plain(" ");
            words(&mut item, city);
            item.plain(" ");
            words(&mut item, state);
            item.plain(" ").secret(zip);
            "no commas, state name zip"
        }
    };
    if rng.chance(10) {
        item.lowercase();
    }
    let sentence = rng.pick(&[
        "Please mail the replacement to {}.",
        "Our new address is {}, effective Monday.",
        "The invoice still shows {} as my address",
        "I'm staying at {} until the lease ends!",
        "Deliveries go to {}; the gate code is on file.",
    ]);
    (item.take(), sentence)
}

fn dob(rng: &mut Rng) -> (Item, &'static str) {
    let (y, m, d) = (rng.int(1940, 2008), rng.int(1, 12), rng.int(1, 28));
    let month = [
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
    ][m as usize - 1];
    let mut item = Item::new(Family::Dob, "");
    item.form = match rng.below(4) {
        0 => {
            item.digits_secret(&format!("{m}/{d}/{y}"));
            "m/d/y"
        }
        1 => {
            item.digits_secret(&format!("{y}-{m:02}-{d:02}"));
            "iso"
        }
        2 => {
            item.secret(month)
                .plain(" ")
                .secret(&d.to_string())
                .plain(", ")
                .secret(&y.to_string());
            "Month d, y"
        }
        _ => {
            item.secret(&d.to_string())
                .plain(" ")
                .secret(month)
                .plain(" ")
                .secret(&y.to_string());
            "d Month y"
        }
    };
    let sentence = rng.pick(&[
        "I was born on {} if you need to verify.",
        "Date of birth: {}",
        "My DOB is {}.",
        "The account holder's birthdate is {}.",
        "{} is my date of birth.",
    ]);
    (item.take(), sentence)
}

fn email(rng: &mut Rng) -> (Item, &'static str) {
    let local = rng.pick(&[
        "sam.rivera",
        "r.okoye+billing",
        "ALEX_K",
        "jp2024",
        "m-chen",
    ]);
    let host = rng.pick(&[
        "northwind.example.com",
        "mail.co.uk",
        "gmail.com",
        "uni.edu",
    ]);
    let mut item = Item::new(Family::Email, "address");
    item.secret(local).plain("@").secret(host);
    let sentence = rng.pick(&[
        "Reply to {} instead of the old inbox.",
        "My login email is {}.",
        "Forward it to {} please.",
    ]);
    (item.take(), sentence)
}

fn card(rng: &mut Rng) -> (Item, &'static str) {
    let mut n = format!("4{}", rng.digits(14));
    let sum: u32 = n
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
    n.push(char::from(b'0' + ((10 - sum % 10) % 10) as u8));
    let text = if rng.chance(50) {
        format!("{} {} {} {}", &n[..4], &n[4..8], &n[8..12], &n[12..])
    } else {
        n
    };
    let mut item = Item::new(Family::Card, "visa");
    item.digits_secret(&text);
    let sentence = rng.pick(&[
        "The charge went to my Visa {}.",
        "I used card {} for the deposit.",
    ]);
    (item.take(), sentence)
}

fn ip(rng: &mut Rng) -> (Item, &'static str) {
    let mut item = Item::new(Family::Ip, "v4");
    let o = [
        rng.int(11, 223),
        rng.int(0, 255),
        rng.int(0, 255),
        rng.int(1, 254),
    ];
    item.secret(&o[0].to_string());
    for x in &o[1..] {
        item.plain(".").secret(&x.to_string());
    }
    let sentence = rng.pick(&[
        "The suspicious login came from {} overnight.",
        "Our VPN exit is {}, please allow it.",
    ]);
    (item.take(), sentence)
}

fn look_alike(rng: &mut Rng, r: &mut Record) {
    let valid_ssn = |rng: &mut Rng| {
        format!(
            "{:03}-{:02}-{:04}",
            rng.int(100, 665),
            rng.int(1, 99),
            rng.int(1, 9999)
        )
    };
    match rng.below(10) {
        0 => {
            let t = rng.pick(&[
                "The part number on the pump is ",
                "Replacement filters are lot ",
                "Batch ",
                "Our SKU for that kit is ",
                "Case reference ",
            ]);
            let n = valid_ssn(rng);
            r.say(t).look_alike(Family::Ssn, "cued 3-2-4", &n).say(".");
        }
        1 => {
            let v = format!(
                "{}.{}.{}.{}",
                rng.int(1, 12),
                rng.int(0, 9),
                rng.int(0, 40),
                rng.int(0, 300)
            );
            let t = rng.pick(&[
                ("The app says version ", "."),
                ("We rolled back to build ", " yesterday."),
                ("Release ", " fixed the sync bug."),
                ("After updating to v", " it crashes."),
            ]);
            r.say(t.0).look_alike(Family::Ip, "version", &v).say(t.1);
        }
        2 => {
            let n = rng.fill("NDD-NDD-DDDD");
            r.say(rng.pick(&["Your order number is ", "Tracking ref ", "Invoice "]))
                .look_alike(Family::Phone, "cued phone-shaped id", &n)
                .say(".");
        }
        3 => {
            let z = format!("{}{}", rng.int(1, 9), rng.digits(4));
            r.say("Is ")
                .look_alike(Family::Address, "zip alone", &z)
                .say(" inside your delivery area?");
        }
        4 => {
            let d = format!(
                "{}/{}/{}",
                rng.int(1, 12),
                rng.int(1, 28),
                rng.int(2020, 2026)
            );
            r.say("The appointment moved to ")
                .look_alike(Family::Dob, "plain date", &d)
                .say(".");
        }
        5 => {
            let t = format!("{} mg", rng.pick(&[5, 20, 40, 250]));
            r.say("The pharmacy filled ")
                .look_alike(Family::Dob, "dosage", &t)
                .say(" instead.");
        }
        6 => {
            let t = format!(
                "{}-{}-{}",
                rng.pick(&["000", "666", "912"]),
                rng.digits(2),
                rng.digits(4)
            );
            r.say("The voucher code printed as ")
                .look_alike(Family::Ssn, "invalid ssn", &t)
                .say(".");
        }
        7 => {
            let isbn = format!("978-1-{}-{}-{}", rng.digits(3), rng.digits(5), rng.digit());
            r.say("The handbook is ISBN ")
                .look_alike(Family::Phone, "isbn", &isbn)
                .say(".");
        }
        8 => {
            let t = format!("${}.{:02}", rng.int(10, 999), rng.int(0, 99));
            r.say("I was billed ")
                .look_alike(Family::Card, "price", &t)
                .say(" twice.");
        }
        _ => {
            r.say("We walked ")
                .look_alike(
                    Family::Address,
                    "quantity and street",
                    "4 blocks down Lexington Avenue",
                )
                .say(" to the depot.");
        }
    }
}

/// Records of the fresh set; record `i` is mostly about family `i % 7`.
pub fn records(seed: u64, n: usize) -> Vec<Record> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let family = Family::ALL[i % Family::ALL.len()];
        let mut r = Record::default();
        r.say(rng.pick(GREETINGS)).say(" ");
        let planted = rng.chance(75);
        let sentences = rng.int(2, 4);
        let at = rng.below(sentences as usize);
        for k in 0..sentences as usize {
            if k > 0 {
                r.say(" ");
            }
            if k == at && planted {
                let (item, sentence) = match family {
                    Family::Phone => phone(&mut rng),
                    Family::Ssn => ssn(&mut rng),
                    Family::Address => address(&mut rng),
                    Family::Dob => dob(&mut rng),
                    Family::Email => email(&mut rng),
                    Family::Card => card(&mut rng),
                    Family::Ip => ip(&mut rng),
                };
                let (before, after) = sentence.split_once("{}").expect("slot");
                r.say(before).pii(item).say(after);
            } else if rng.chance(50) {
                look_alike(&mut rng, &mut r);
            } else {
                r.say(rng.pick(PROSE));
            }
        }
        r.say(" ").say(rng.pick(SIGN_OFFS));
        out.push(r);
    }
    out
}

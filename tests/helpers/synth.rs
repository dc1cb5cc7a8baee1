//! A seeded generator of synthetic therapy-style conversations for the pipeline's tests and
//! benchmark: the same seed always gives the same bytes. Records come in the three NDJSON
//! shapes (chat, ShareGPT, question/answer) with planted PII, exact and near duplicates and
//! low-quality records in fixed proportions.

use serde_json::{Value, json};

/// xorshift64*: small, fast and reproducible; quality is irrelevant here.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const OPENERS: &[&str] = &[
    "I have been feeling anxious before work most mornings",
    "My sleep has been poor since we moved to the new apartment",
    "I keep arguing with my partner about small household things",
    "I feel overwhelmed by deadlines and cannot seem to focus",
    "Since my father passed away I find it hard to enjoy anything",
    "I get nervous in meetings and my mind goes blank",
    "I have been drinking more coffee to push through the afternoon",
    "My teenage son barely talks to me anymore",
    "I worry constantly about money even when things are fine",
    "I started avoiding friends because socialising feels exhausting",
];
const DETAILS: &[&str] = &[
    "it usually starts on Sunday evening and lasts until Tuesday",
    "my chest gets tight and I notice my breathing speeds up",
    "I lie awake replaying conversations from the day",
    "I tell myself it is nothing but the feeling does not go away",
    "my manager noticed and asked whether everything was okay",
    "I tried journaling for a week and it helped a little",
    "weekends are better but the dread comes back quickly",
    "I snap at people I care about and then feel guilty",
];
const REFLECTIONS: &[&str] = &[
    "That sounds exhausting, and it makes sense that you feel worn down.",
    "Thank you for sharing that; noticing the pattern is an important first step.",
    "It sounds like the worry has been carrying a lot of weight for you lately.",
    "You have been coping with a great deal, and that takes real effort.",
    "I hear how much you care about getting this right.",
];
const QUESTIONS: &[&str] = &[
    "What do you notice in your body when the feeling begins?",
    "When was the last time you felt calm, and what was different then?",
    "What would a small, manageable step look like this week?",
    "Who in your life could you lean on when it gets hard?",
    "How have you handled similar moments in the past?",
];
const FOLLOWUPS: &[&str] = &[
    "I think a short walk after lunch might help me reset.",
    "Maybe I could tell my partner earlier in the day how I feel.",
    "I could try turning my phone off an hour before bed.",
    "Talking to my sister usually helps, so I could call her on Thursday.",
    "I might write down three things that went well each evening.",
];
const PII: &[&str] = &[
    "You can email me at jordan.miles@example.com if that is easier.",
    "My cell is (415) 555-0142 if you need to reach me.",
    "For the form, my social security number is 536-22-8841.",
    "I paid the copay with card 4111 1111 1111 1111 yesterday.",
    "I live at 742 Evergreen Terrace, Springfield, IL 62704.",
];

/// The proportions of special records, in percent.
pub const PII_PERCENT: usize = 5;
pub const DUPLICATE_PERCENT: usize = 3;
pub const NEAR_DUPLICATE_PERCENT: usize = 2;
pub const LOW_QUALITY_PERCENT: usize = 3;

const PEOPLE: &[&str] = &[
    "my partner",
    "my boss",
    "my sister",
    "my neighbour",
    "my coach",
    "my flatmate",
    "my oldest friend",
    "my mother",
    "my son",
    "my teacher",
    "a colleague",
    "my doctor",
];
const PLACES: &[&str] = &[
    "at the office",
    "on the train",
    "at the gym",
    "in the kitchen",
    "at school pickup",
    "in the car park",
    "at the supermarket",
    "at my desk",
    "on video calls",
    "in bed",
];
const WEEKDAYS: &[&str] = &[
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

fn conversation(rng: &mut Rng, with_pii: bool) -> Vec<(&'static str, String)> {
    // Free slots (people, places, days, durations) keep independent conversations from looking
    // like near-duplicates of each other, as they would not in real data.
    let mut opener = format!(
        "{} for about {} weeks, mostly {} and around {}, and {}.",
        rng.pick(OPENERS),
        2 + rng.below(30),
        rng.pick(PLACES),
        rng.pick(PEOPLE),
        rng.pick(DETAILS)
    );
    if with_pii {
        opener = format!("{opener} {}", rng.pick(PII));
    }
    vec![
        ("client", opener),
        (
            "therapist",
            format!("{} {}", rng.pick(REFLECTIONS), rng.pick(QUESTIONS)),
        ),
        (
            "client",
            format!(
                "{} On {} {} said {}.",
                rng.pick(FOLLOWUPS),
                rng.pick(WEEKDAYS),
                rng.pick(PEOPLE),
                rng.pick(DETAILS)
            ),
        ),
        (
            "therapist",
            format!("{} {}", rng.pick(REFLECTIONS), rng.pick(QUESTIONS)),
        ),
    ]
}

/// One record in one of the three NDJSON shapes.
fn shaped(rng: &mut Rng, id: usize, turns: &[(&str, String)]) -> Value {
    match rng.below(3) {
        0 => json!({
            "id": format!("conv-{id}"),
            "messages": turns.iter().map(|(r, c)| json!({"role": r, "content": c})).collect::<Vec<_>>(),
        }),
        1 => json!({
            "id": format!("conv-{id}"),
            "conversations": turns.iter().map(|(r, c)| json!({
                "from": if *r == "client" { "human" } else { "gpt" },
                "value": c,
            })).collect::<Vec<_>>(),
        }),
        _ => json!({
            "id": format!("conv-{id}"),
            "question": turns.iter().filter(|(r, _)| *r == "client").map(|(_, c)| c.as_str()).collect::<Vec<_>>().join(" "),
            "answer": turns.iter().filter(|(r, _)| *r != "client").map(|(_, c)| c.as_str()).collect::<Vec<_>>().join(" "),
        }),
    }
}

/// `n` records as NDJSON bytes.
pub fn ndjson(seed: u64, n: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(n * 700);
    let mut recent: Vec<Vec<(&'static str, String)>> = Vec::new();
    for id in 0..n {
        let roll = rng.below(100);
        let turns = if roll < DUPLICATE_PERCENT && !recent.is_empty() {
            recent[rng.below(recent.len())].clone()
        } else if roll < DUPLICATE_PERCENT + NEAR_DUPLICATE_PERCENT && !recent.is_empty() {
            let mut t = recent[rng.below(recent.len())].clone();
            t[0].1 = t[0].1.replace('.', "!");
            t
        } else if roll < DUPLICATE_PERCENT + NEAR_DUPLICATE_PERCENT + LOW_QUALITY_PERCENT {
            vec![("client", "ok ok ok ok ok ok ok ok".to_string())]
        } else {
            let with_pii = rng.below(100) < PII_PERCENT;
            conversation(&mut rng, with_pii)
        };
        if recent.len() < 256 {
            recent.push(turns.clone());
        } else {
            let slot = rng.below(256);
            recent[slot] = turns.clone();
        }
        let record = shaped(&mut rng, id, &turns);
        serde_json::to_writer(&mut out, &record).unwrap();
        out.push(b'\n');
    }
    out
}

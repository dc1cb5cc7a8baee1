//! Throughput of PII redaction on one core, on conversation records of a few hundred bytes of
//! which about 5% hold PII (the shape of the pipeline's validation stage). Many of the others
//! hold look-alikes (part and lot numbers, versions, order numbers, ZIP codes), which cost more
//! to judge than plain text.
//!
//! `cargo bench -p mcp-shared --bench pii`

use std::hint::black_box;
use std::time::{Duration, Instant};

use mcp_shared::pii;

const RECORDS: usize = 50_000;
const ROUNDS: usize = 5;

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
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

const LINES: &[&str] = &[
    "Therapist: How have you been sleeping this week?",
    "Client: Honestly, not great. I keep waking up around 3 and can't get back to sleep.",
    "Therapist: What do you notice in your body when that happens?",
    "Client: My chest gets tight and I start replaying conversations from work.",
    "Therapist: That sounds exhausting. Let's slow down for a moment and breathe.",
    "Client: I tried the 4-7-8 breathing exercise twice a day, it helped a little.",
    "Therapist: Your PHQ-9 went from 14 to 11, which is real progress.",
    "Client: The doctor raised me to 100 mg of sertraline last month.",
    "Client: BP was 128/84 at the clinic and my A1C is 6.1% now.",
    "Therapist: Same time next week, 4:30? We'll review chapter 3 of the workbook.",
    "Agent: Thanks for reaching out! How can I help today?",
    "Customer: The app keeps logging me out every few minutes since version 2.4.1.",
    "Agent: I'm sorry about that, let me take a look at your account.",
    "Customer: I was charged $49.99 twice for order #88213 on the 3rd.",
    "Agent: I've escalated ticket 555-1234-88 to our technical team.",
    "Customer: Great, thanks. How long will that take? It's been 2-3 weeks.",
    "Agent: Usually a day or two, and we'll email you with updates.",
    "Customer: The delivery driver left it at the wrong door again.",
    "user: can you summarize what we discussed last time?",
    "assistant: Sure. We talked about your sleep routine, stress at work and the 10 minute walks.",
    "user: ok thanks, that helps a lot",
    "assistant: Is there anything else you'd like to go over before we wrap up?",
    "Agent: the part number for the pump is 123-45-6789, and it ships from lot 555-12-3456.",
    "Customer: I'm on version 10.0.0.1 since the update, build 4.12.0.3 before that.",
    "Agent: order 555-123-4567 left the Main St warehouse, ISBN 978-0-306-40615-7 is separate.",
    "Customer: is ZIP 94103-1234 in range? We walked 3 blocks down Oak Avenue to check.",
];

const PII_LINES: &[&str] = &[
    "Client: you can text me at (555) 123-4567 if the session moves.",
    "Customer: my email is dana.reyes@example.org, please send the receipt there.",
    "Customer: the card I used was 4111 1111 1111 1111, expiring 09/27.",
    "Customer: I moved to 1234 Elm Street, Apt 5B, Springfield, IL 62704.",
    "Client: I was born on March 14, 1985 so this week is hard.",
    "Customer: the login came from 73.142.18.9, that wasn't me.",
    "Customer: my SSN is 123-45-6789 for the verification.",
    "user: our office range is 2001:db8::8a2e:370:7334",
    "Customer: ship it to 12 Oak St Apt 16D Springfield IL 62704, please.",
    "Client: call my work line 5551234567, or my cell in Pune, 98765 43210.",
    "Customer: my address is 77 Elm Street, Springfield, Illinois.",
    "user: reach me on +44 7911 123456 or at the office, 020 7946 0958.",
];

fn record(rng: &mut Rng, with_pii: bool) -> String {
    let target = 300 + rng.below(300);
    let mut text = String::with_capacity(target + 128);
    let pii_at = if with_pii { rng.below(4) } else { usize::MAX };
    let mut i = 0;
    while text.len() < target {
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(if i == pii_at {
            rng.pick(PII_LINES)
        } else {
            rng.pick(LINES)
        });
        i += 1;
    }
    if text.len() > 600 {
        let mut cut = 600;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

fn main() {
    let mut rng = Rng(0x00be_ef00_1234_5678);
    let records: Vec<String> = (0..RECORDS)
        .map(|_| {
            let with_pii = rng.below(100) < 5;
            record(&mut rng, with_pii)
        })
        .collect();
    let bytes: usize = records.iter().map(String::len).sum();

    // Warm-up: compiles the lazily built regexes and faults the records into cache.
    let redacted = records
        .iter()
        .filter(|r| !pii::redact_text(r).1.is_empty())
        .count();

    let mut best = Duration::MAX;
    let mut total = Duration::ZERO;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        for r in &records {
            black_box(pii::redact_text(black_box(r)));
        }
        let took = start.elapsed();
        best = best.min(took);
        total += took;
    }
    let start = Instant::now();
    let flagged = records
        .iter()
        .filter(|r| pii::contains_pii(black_box(r)))
        .count();
    let check = start.elapsed();

    let per_sec = |d: Duration| RECORDS as f64 / d.as_secs_f64();
    println!(
        "pii: {RECORDS} records, {:.0} bytes on average, {redacted} with PII ({:.1}%)",
        bytes as f64 / RECORDS as f64,
        100.0 * redacted as f64 / RECORDS as f64
    );
    println!(
        "redact_text:  {:>10.0} records/s best, {:>10.0} mean, {:.1} MB/s best",
        per_sec(best),
        per_sec(total / ROUNDS as u32),
        bytes as f64 / best.as_secs_f64() / 1e6
    );
    println!(
        "contains_pii: {:>10.0} records/s ({flagged} flagged)",
        per_sec(check)
    );
}

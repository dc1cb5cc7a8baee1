//! The stage functions alone, on one core, over the seeded synthetic dataset: records/s per
//! stage without queues, databases or the network, plus the bias scorer's worst case.
//!
//! Run: `cargo bench -p mcp-worker --bench stages` (`MCP_BENCH_RECORDS` changes the size).

#[allow(dead_code)]
#[path = "../../tests/helpers/synth.rs"]
mod synth;

use std::time::Instant;

use mcp_shared::domain::pipeline::{
    DatasetFormat, ExportFormat, Message, PipelineOptions, Record, SourceFormat,
};
use mcp_worker::{
    analysis::bias,
    stages::{self, Control},
};
use serde_json::{Map, Value};

fn rate(label: &str, n: usize, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    println!(
        "  {label:<20} {:>10.0} records/s  ({n} records, {secs:.2} s)",
        n as f64 / secs
    );
}

fn main() {
    let n: usize = std::env::var("MCP_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let data = synth::ndjson(42, n);
    let ctl = Control::detached();
    let options = PipelineOptions::default();
    println!("stage functions, release build, one core, {n} synthetic conversations");

    let t = Instant::now();
    let mut raw = Vec::new();
    stages::ingestion::ingest(&data[..], DatasetFormat::Ndjson, n, &ctl, |_, bytes| {
        raw = bytes;
        Ok(())
    })
    .map_err(|_| ())
    .unwrap();
    rate("ingestion", n, t);

    let t = Instant::now();
    let records: Vec<Record> = raw
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| {
            let v: Value = serde_json::from_slice(l).ok()?;
            let raw: Map<String, Value> = v["raw"].as_object()?.clone();
            stages::standardization::standardize(
                &raw,
                v["line"].as_u64()?,
                SourceFormat::Auto,
                "bench",
            )
            .ok()
        })
        .collect();
    rate("standardization", n, t);

    let t = Instant::now();
    let count = records.len();
    let validated = stages::validation::validate(records, &options, &ctl).unwrap();
    rate("validation", count, t);

    let t = Instant::now();
    let count = validated.records.len();
    let (processed, _) = stages::processing::process(
        &[],
        &validated.fingerprints,
        validated.records,
        options.near_duplicate_threshold,
        &ctl,
    )
    .unwrap();
    rate("processing", count, t);

    let t = Instant::now();
    let count = processed.len();
    let (scored, _) = stages::quality::assess(processed, options.quality_threshold, &ctl).unwrap();
    rate("quality_assessment", count, t);

    let t = Instant::now();
    let mut bytes = 0;
    for format in ExportFormat::ALL {
        let mut w = stages::export::FormatWriter::new(*format, Vec::new()).unwrap();
        for r in &scored {
            w.write(r).unwrap();
        }
        bytes += w.finish().unwrap().len();
    }
    rate("export (3 formats)", scored.len(), t);
    let _ = bytes;

    // The bias scorer's worst case: a record at the scan limit made of nothing but group terms
    // and generalising patterns.
    let sentence = "All women are too emotional and old people can't learn, immigrants are always lazy, muslims are naturally violent, disabled people should not be allowed, gays are typical. ";
    let mut text = String::new();
    while text.len() + sentence.len() <= bias::MAX_SCAN_BYTES {
        text.push_str(sentence);
    }
    let worst = Record {
        id: "worst".into(),
        source: "bench".into(),
        messages: vec![Message {
            role: "user".into(),
            content: text,
        }],
        metadata: Map::new(),
    };
    let runs = 50;
    let t = Instant::now();
    for _ in 0..runs {
        std::hint::black_box(bias::score_record(std::hint::black_box(&worst)));
    }
    println!(
        "  bias worst case: {:.2} ms per {} KiB record (budget 50 ms)",
        t.elapsed().as_secs_f64() * 1000.0 / runs as f64,
        bias::MAX_SCAN_BYTES / 1024
    );
}

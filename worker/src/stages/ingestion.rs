//! Stage 1: stream-parse a dataset (NDJSON, JSON array or CSV) into raw shards without holding
//! the file in memory. A malformed record is rejected with its line number (for a JSON array,
//! its 1-based position), never the whole dataset.

use std::io::{BufRead, Read};

use mcp_shared::domain::pipeline::DatasetFormat;
use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde_json::{Map, Value, json};

use super::{Control, Reject, Rejects, Stopped};

/// What ingestion found.
#[derive(Debug, Default)]
pub struct Ingested {
    pub records: u64,
    pub shards: u32,
    pub rejects: Rejects,
}

/// Splits records into shards of `shard_size`, handing each full shard to `sink` as NDJSON of
/// `{"line": n, "raw": {...}}`. Always produces at least one shard (empty for an empty dataset),
/// so every later stage has something to run on.
struct Sharder<'a, F: FnMut(u32, Vec<u8>) -> Result<(), String>> {
    shard_size: usize,
    current: Vec<u8>,
    in_current: usize,
    shards: u32,
    sink: &'a mut F,
}

impl<F: FnMut(u32, Vec<u8>) -> Result<(), String>> Sharder<'_, F> {
    fn push(&mut self, line: u64, raw: Map<String, Value>) -> Result<(), String> {
        serde_json::to_writer(&mut self.current, &json!({"line": line, "raw": raw}))
            .map_err(|e| e.to_string())?;
        self.current.push(b'\n');
        self.in_current += 1;
        if self.in_current == self.shard_size {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), String> {
        let bytes = std::mem::take(&mut self.current);
        (self.sink)(self.shards, bytes)?;
        self.shards += 1;
        self.in_current = 0;
        Ok(())
    }

    fn finish(mut self) -> Result<u32, String> {
        if self.in_current > 0 || self.shards == 0 {
            self.flush()?;
        }
        Ok(self.shards)
    }
}

/// Why ingestion could not go on at all (as opposed to a rejected record).
#[derive(Debug)]
pub enum IngestError {
    Stopped,
    /// The store refused a shard, or the dataset could not be read.
    Io(String),
}

impl From<Stopped> for IngestError {
    fn from(_: Stopped) -> Self {
        IngestError::Stopped
    }
}

pub fn ingest<F>(
    input: impl Read,
    format: DatasetFormat,
    shard_size: usize,
    ctl: &Control<'_>,
    mut sink: F,
) -> Result<Ingested, IngestError>
where
    F: FnMut(u32, Vec<u8>) -> Result<(), String>,
{
    let mut sharder = Sharder {
        shard_size: shard_size.max(1),
        current: Vec::new(),
        in_current: 0,
        shards: 0,
        sink: &mut sink,
    };
    let mut found = Ingested::default();
    let reader = std::io::BufReader::with_capacity(256 * 1024, input);
    match format {
        DatasetFormat::Ndjson => ndjson(reader, &mut sharder, &mut found, ctl)?,
        DatasetFormat::Csv => csv_rows(reader, &mut sharder, &mut found, ctl)?,
        DatasetFormat::Json => json_array(reader, &mut sharder, &mut found, ctl)?,
    }
    found.shards = sharder.finish().map_err(IngestError::Io)?;
    Ok(found)
}

fn reject(found: &mut Ingested, kind: &str, line: u64, reason: String) {
    found.rejects.add(
        kind,
        Reject {
            stage: "ingestion".into(),
            line: Some(line),
            id: None,
            reason,
        },
    );
}

fn accept<F: FnMut(u32, Vec<u8>) -> Result<(), String>>(
    sharder: &mut Sharder<'_, F>,
    found: &mut Ingested,
    ctl: &Control<'_>,
    line: u64,
    raw: Map<String, Value>,
) -> Result<(), IngestError> {
    sharder.push(line, raw).map_err(IngestError::Io)?;
    found.records += 1;
    tick(found, ctl)
}

/// Progress counts every record read, accepted or rejected, so a dataset of nothing but
/// rejects still reports and can still be stopped.
fn tick(found: &Ingested, ctl: &Control<'_>) -> Result<(), IngestError> {
    ctl.tick(found.records + found.rejects.total)?;
    Ok(())
}

fn ndjson<F: FnMut(u32, Vec<u8>) -> Result<(), String>>(
    mut reader: impl BufRead,
    sharder: &mut Sharder<'_, F>,
    found: &mut Ingested,
    ctl: &Control<'_>,
) -> Result<(), IngestError> {
    let mut buf = Vec::new();
    let mut line = 0u64;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| IngestError::Io(e.to_string()))?;
        if n == 0 {
            return Ok(());
        }
        line += 1;
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Value>(&buf) {
            Ok(Value::Object(raw)) => accept(sharder, found, ctl, line, raw)?,
            Ok(_) => {
                reject(
                    found,
                    "not_an_object",
                    line,
                    "line is not a JSON object".into(),
                );
                tick(found, ctl)?;
            }
            Err(e) => {
                reject(
                    found,
                    "malformed_json",
                    line,
                    format!("malformed JSON: {e}"),
                );
                tick(found, ctl)?;
            }
        }
    }
}

fn csv_rows<F: FnMut(u32, Vec<u8>) -> Result<(), String>>(
    reader: impl Read,
    sharder: &mut Sharder<'_, F>,
    found: &mut Ingested,
    ctl: &Control<'_>,
) -> Result<(), IngestError> {
    let mut csv = csv::ReaderBuilder::new()
        .flexible(false)
        .trim(csv::Trim::None)
        .from_reader(reader);
    let headers = match csv.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            reject(found, "malformed_csv", 1, format!("unreadable header: {e}"));
            return Ok(());
        }
    };
    let mut row = csv::StringRecord::new();
    loop {
        match csv.read_record(&mut row) {
            Ok(false) => return Ok(()),
            Ok(true) => {
                let line = row.position().map_or(0, |p| p.line());
                let raw: Map<String, Value> = headers
                    .iter()
                    .zip(row.iter())
                    .map(|(h, v)| (h.to_string(), Value::String(v.to_string())))
                    .collect();
                accept(sharder, found, ctl, line, raw)?;
            }
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    return Err(IngestError::Io(e.to_string()));
                }
                reject(
                    found,
                    "malformed_csv",
                    line,
                    format!("malformed CSV row: {e}"),
                );
                if !matches!(e.kind(), csv::ErrorKind::UnequalLengths { .. }) {
                    // The reader cannot resynchronise after invalid UTF-8 or quoting.
                    return Ok(());
                }
            }
        }
    }
}

/// Streams the elements of a top-level JSON array one at a time.
fn json_array<F: FnMut(u32, Vec<u8>) -> Result<(), String>>(
    reader: impl Read,
    sharder: &mut Sharder<'_, F>,
    found: &mut Ingested,
    ctl: &Control<'_>,
) -> Result<(), IngestError> {
    struct Elements<'s, 'a, F: FnMut(u32, Vec<u8>) -> Result<(), String>> {
        sharder: &'s mut Sharder<'a, F>,
        found: &'s mut Ingested,
        ctl: &'s Control<'s>,
        fatal: &'s mut Option<IngestError>,
        position: &'s mut u64,
    }
    impl<'de, F: FnMut(u32, Vec<u8>) -> Result<(), String>> Visitor<'de> for Elements<'_, '_, F> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON array of records")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            loop {
                let element = seq.next_element::<Value>()?;
                let Some(value) = element else { return Ok(()) };
                *self.position += 1;
                match value {
                    Value::Object(raw) => {
                        if let Err(e) =
                            accept(self.sharder, self.found, self.ctl, *self.position, raw)
                        {
                            *self.fatal = Some(e);
                            return Err(serde::de::Error::custom("stopped"));
                        }
                    }
                    _ => reject(
                        self.found,
                        "not_an_object",
                        *self.position,
                        "array element is not a JSON object".into(),
                    ),
                }
            }
        }
    }
    impl<'de, F: FnMut(u32, Vec<u8>) -> Result<(), String>> DeserializeSeed<'de>
        for Elements<'_, '_, F>
    {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_seq(self)
        }
    }

    let mut fatal = None;
    let mut position = 0u64;
    let mut de = serde_json::Deserializer::from_reader(reader);
    let parsed = Elements {
        sharder,
        found,
        ctl,
        fatal: &mut fatal,
        position: &mut position,
    }
    .deserialize(&mut de);
    if let Some(e) = fatal {
        return Err(e);
    }
    if let Err(e) = parsed {
        // A syntax error ends the array: what came before it is kept.
        reject(
            found,
            "malformed_json",
            position + 1,
            format!("malformed JSON at record {}: {e}", position + 1),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &str, format: DatasetFormat, shard_size: usize) -> (Ingested, Vec<Vec<Value>>) {
        let mut shards = Vec::new();
        let found = ingest(
            input.as_bytes(),
            format,
            shard_size,
            &Control::detached(),
            |_, bytes| {
                shards.push(
                    String::from_utf8(bytes)
                        .unwrap()
                        .lines()
                        .map(|l| serde_json::from_str(l).unwrap())
                        .collect(),
                );
                Ok(())
            },
        )
        .map_err(|_| ())
        .unwrap();
        (found, shards)
    }

    #[test]
    fn ndjson_rejects_bad_lines_by_number_and_shards_the_rest() {
        let input = "{\"a\":1}\nnot json\n\n[1,2]\n{\"a\":2}\n{\"a\":3}\n";
        let (found, shards) = run(input, DatasetFormat::Ndjson, 2);
        assert_eq!(found.records, 3);
        assert_eq!(found.shards, 2);
        assert_eq!(shards[0].len(), 2);
        assert_eq!(shards[1][0]["line"], 6);
        assert_eq!(shards[1][0]["raw"]["a"], 3);
        let lines: Vec<_> = found.rejects.kept.iter().map(|r| r.line.unwrap()).collect();
        assert_eq!(lines, vec![2, 4]);
        assert_eq!(found.rejects.by_reason["malformed_json"], 1);
        assert_eq!(found.rejects.by_reason["not_an_object"], 1);
    }

    #[test]
    fn csv_maps_headers_and_rejects_ragged_rows() {
        let input = "question,answer\n\"What is CBT?\",\"A therapy, often short.\"\nonly one field\n\"multi\nline\",ok\n";
        let (found, shards) = run(input, DatasetFormat::Csv, 10);
        assert_eq!(found.records, 2);
        assert_eq!(shards[0][0]["raw"]["answer"], "A therapy, often short.");
        assert_eq!(shards[0][1]["raw"]["question"], "multi\nline");
        assert_eq!(found.rejects.kept[0].line, Some(3));
    }

    #[test]
    fn json_array_streams_elements_and_keeps_records_before_a_syntax_error() {
        let (found, shards) = run(r#"[{"a":1}, 5, {"a":2}]"#, DatasetFormat::Json, 10);
        assert_eq!(found.records, 2);
        assert_eq!(shards[0].len(), 2);
        assert_eq!(found.rejects.kept[0].line, Some(2));

        let (found, _) = run(r#"[{"a":1}, {"a": }"#, DatasetFormat::Json, 10);
        assert_eq!(found.records, 1);
        assert_eq!(found.rejects.total, 1);
    }

    #[test]
    fn empty_dataset_gives_one_empty_shard() {
        let (found, shards) = run("", DatasetFormat::Ndjson, 10);
        assert_eq!((found.records, found.shards), (0, 1));
        assert!(shards[0].is_empty());
        let (found, _) = run("[]", DatasetFormat::Json, 10);
        assert_eq!((found.records, found.shards), (0, 1));
    }
}

//! Dataset uploads: the body streams to a staging file (never held in memory) while its sha256
//! and record count are computed, then moves into the artifact store.

use chrono::Utc;
use mcp_shared::{
    crypto, db, domain::pipeline::DatasetFormat, entities::datasets::Model as Dataset,
};
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{
    error::{ApiError, ErrorCode},
    services::staging,
    state::AppState,
};

/// The container a `Content-Type` names.
pub fn format_for(content_type: Option<&str>) -> Result<DatasetFormat, ApiError> {
    let essence = content_type
        .and_then(|c| c.parse::<mime::Mime>().ok())
        .map(|m| m.essence_str().to_ascii_lowercase());
    match essence.as_deref() {
        Some("application/x-ndjson" | "application/ndjson" | "application/jsonl" | "application/x-jsonlines") => {
            Ok(DatasetFormat::Ndjson)
        }
        Some("text/csv") => Ok(DatasetFormat::Csv),
        Some("application/json") => Ok(DatasetFormat::Json),
        _ => Err(ApiError::new(ErrorCode::UnsupportedMediaType,
            "send the dataset as application/x-ndjson, text/csv or application/json (an array of records)",
        )
        .with_details(json!({"supported": ["application/x-ndjson", "text/csv", "application/json"]}))),
    }
}

/// Counts records while the bytes stream past: non-blank lines (NDJSON), rows after the
/// header outside quotes (CSV), or top-level elements (JSON array).
#[derive(Debug)]
pub struct RecordCounter {
    format: DatasetFormat,
    count: u64,
    line_has_content: bool,
    in_string: bool,
    escaped: bool,
    depth: u32,
    commas: u64,
    array_has_content: bool,
    first_byte: Option<u8>,
}

impl RecordCounter {
    pub fn new(format: DatasetFormat) -> Self {
        Self {
            format,
            count: 0,
            line_has_content: false,
            in_string: false,
            escaped: false,
            depth: 0,
            commas: 0,
            array_has_content: false,
            first_byte: None,
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        for &b in chunk {
            if self.first_byte.is_none() && !b.is_ascii_whitespace() {
                self.first_byte = Some(b);
            }
            match self.format {
                DatasetFormat::Ndjson => self.line(b, false),
                DatasetFormat::Csv => self.line(b, true),
                DatasetFormat::Json => self.json(b),
            }
        }
    }

    fn line(&mut self, b: u8, quotes: bool) {
        if quotes && b == b'"' {
            self.in_string = !self.in_string;
        }
        if b == b'\n' && !self.in_string {
            if self.line_has_content {
                self.count += 1;
            }
            self.line_has_content = false;
        } else if !b.is_ascii_whitespace() {
            self.line_has_content = true;
        }
    }

    fn json(&mut self, b: u8) {
        if self.in_string {
            match (self.escaped, b) {
                (true, _) => self.escaped = false,
                (false, b'\\') => self.escaped = true,
                (false, b'"') => self.in_string = false,
                _ => {}
            }
            return;
        }
        match b {
            b'"' => {
                self.in_string = true;
                self.mark_element();
            }
            b'[' | b'{' => {
                self.mark_element();
                self.depth += 1;
            }
            b']' | b'}' => self.depth = self.depth.saturating_sub(1),
            b',' if self.depth == 1 => self.commas += 1,
            b if !b.is_ascii_whitespace() => self.mark_element(),
            _ => {}
        }
    }

    fn mark_element(&mut self) {
        if self.depth == 1 {
            self.array_has_content = true;
        }
    }

    /// The record count, and whether the content has the right outer shape.
    pub fn finish(mut self) -> Result<u64, ApiError> {
        match self.format {
            DatasetFormat::Ndjson => {
                if self.line_has_content {
                    self.count += 1;
                }
                Ok(self.count)
            }
            DatasetFormat::Csv => {
                if self.line_has_content {
                    self.count += 1;
                }
                // The first row is the header.
                Ok(self.count.saturating_sub(1))
            }
            DatasetFormat::Json => match self.first_byte {
                None => Ok(0),
                Some(b'[') => Ok(if self.array_has_content {
                    self.commas + 1
                } else {
                    0
                }),
                Some(_) => Err(ApiError::invalid_field(
                    "body",
                    "a JSON dataset must be an array of records",
                )),
            },
        }
    }
}

/// Streams `body` into the store as a new dataset.
pub async fn upload(
    state: &AppState,
    body: poem::Body,
    format: DatasetFormat,
    name: Option<String>,
    created_by: &str,
) -> Result<Dataset, ApiError> {
    let name = name.unwrap_or_else(|| "dataset".into());
    if name.is_empty() || name.len() > 200 {
        return Err(ApiError::invalid_field(
            "name",
            "name must be 1-200 characters",
        ));
    }
    let id = Uuid::now_v7();
    let mut check = UploadCheck {
        hasher: Sha256::new(),
        counter: Some(RecordCounter::new(format)),
        records: 0,
    };
    let key = mcp_shared::artifacts::keys::dataset(id, format);
    let bytes = staging::store(state, &key, body, "upload", &mut check).await?;
    let (sha256, records) = (hex::encode(check.hasher.finalize()), check.records);
    let row = new_row(id, name, format, bytes, sha256, records, created_by);
    db::pipelines::insert_dataset(&state.db.conn, row.clone()).await?;
    Ok(row)
}

/// Stores records sent inline with an execution request as an NDJSON dataset.
pub async fn from_records(
    state: &AppState,
    records: &[serde_json::Value],
    created_by: &str,
) -> Result<Dataset, ApiError> {
    let mut bytes = Vec::new();
    for r in records {
        serde_json::to_writer(&mut bytes, r).map_err(ApiError::internal)?;
        bytes.push(b'\n');
    }
    let row = new_row(
        Uuid::now_v7(),
        "inline".into(),
        DatasetFormat::Ndjson,
        bytes.len() as u64,
        crypto::sha256_hex(&bytes),
        records.len() as u64,
        created_by,
    );
    state.artifacts.put(&row.artifact_key, bytes).await?;
    db::pipelines::insert_dataset(&state.db.conn, row.clone()).await?;
    Ok(row)
}

/// The row of a dataset whose bytes are (about to be) stored under its artifact key.
fn new_row(
    id: Uuid,
    name: String,
    format: DatasetFormat,
    bytes: u64,
    sha256: String,
    records: u64,
    created_by: &str,
) -> Dataset {
    Dataset {
        id,
        name,
        format: format.as_str().into(),
        records: records as i64,
        bytes: bytes as i64,
        sha256,
        artifact_key: mcp_shared::artifacts::keys::dataset(id, format),
        created_by: Some(created_by.into()),
        created_at: Utc::now(),
        purged_at: None,
    }
}

/// What an upload works out as it streams past: its sha256 and its records.
struct UploadCheck {
    hasher: Sha256,
    /// Until the end, when it gives `records` (or refuses the dataset's shape).
    counter: Option<RecordCounter>,
    records: u64,
}

impl staging::Inspect for UploadCheck {
    fn feed(&mut self, chunk: &[u8]) -> Result<(), ApiError> {
        self.hasher.update(chunk);
        if let Some(c) = self.counter.as_mut() {
            c.feed(chunk);
        }
        Ok(())
    }

    fn end(&mut self) -> Result<Option<&'static [u8]>, ApiError> {
        if let Some(c) = self.counter.take() {
            self.records = c.finish()?;
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(format: DatasetFormat, text: &str) -> u64 {
        let mut c = RecordCounter::new(format);
        // Feed in small pieces: state must carry across chunk boundaries.
        for piece in text.as_bytes().chunks(3) {
            c.feed(piece);
        }
        c.finish().unwrap()
    }

    #[test]
    fn counts_records_per_format() {
        assert_eq!(count(DatasetFormat::Ndjson, "{}\n\n{}\n{}"), 3);
        assert_eq!(count(DatasetFormat::Csv, "q,a\n\"x\ny\",1\nb,2\n"), 2);
        assert_eq!(
            count(DatasetFormat::Json, r#"[{"a": "x,]"}, {"b": [1,2]}, 3]"#),
            3
        );
        assert_eq!(count(DatasetFormat::Json, " [ ] "), 0);
        assert_eq!(count(DatasetFormat::Json, ""), 0);
        let mut c = RecordCounter::new(DatasetFormat::Json);
        c.feed(b"{\"a\":1}");
        assert!(c.finish().is_err());
    }
}

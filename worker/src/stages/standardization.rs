//! Stage 2: map each raw record to the canonical shape. Recognised shapes: chat JSONL
//! (`messages` with role/content), ShareGPT (`conversations` with from/value), and question /
//! answer pairs in JSON or CSV (`question/answer`, `prompt/response`, `input/output`,
//! `instruction/output` with an optional `input`). Text is Unicode NFC with outer whitespace
//! trimmed; ids are the record's own or `{source}:{line}`, so re-runs give the same ids.

use mcp_shared::domain::pipeline::{Message, Record, SourceFormat};
use serde_json::{Map, Value};
use unicode_normalization::UnicodeNormalization;

/// The shape a raw record was recognised as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Chat,
    ShareGpt,
    QuestionAnswer,
}

/// Question / answer key pairs, most specific first.
const QA_KEYS: &[(&str, &str)] = &[
    ("question", "answer"),
    ("prompt", "response"),
    ("instruction", "output"),
    ("input", "output"),
];

fn detect(raw: &Map<String, Value>) -> Option<Shape> {
    if raw.get("messages").is_some_and(Value::is_array) {
        Some(Shape::Chat)
    } else if raw.get("conversations").is_some_and(Value::is_array) {
        Some(Shape::ShareGpt)
    } else if QA_KEYS
        .iter()
        .any(|(q, a)| raw.contains_key(*q) && raw.contains_key(*a))
    {
        Some(Shape::QuestionAnswer)
    } else {
        None
    }
}

fn allowed(format: SourceFormat, shape: Shape) -> bool {
    match format {
        SourceFormat::Auto => true,
        SourceFormat::ChatJsonl => shape == Shape::Chat,
        SourceFormat::ShareGpt => shape == Shape::ShareGpt,
        SourceFormat::QaJson | SourceFormat::QaCsv => shape == Shape::QuestionAnswer,
    }
}

/// Normalises a role name to the canonical set where the meaning is clear; anything else is
/// kept (lowercased) for validation to reject as unknown.
fn role(name: &str) -> String {
    let lower = name.trim().to_lowercase();
    match lower.as_str() {
        "human" | "user" | "patient" | "customer" => "user".into(),
        "gpt" | "bot" | "assistant" | "ai" | "model" | "chatgpt" => "assistant".into(),
        "system" => "system".into(),
        "client" => "client".into(),
        "therapist" | "counselor" | "counsellor" => "therapist".into(),
        _ => lower,
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.nfc().collect::<String>().trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn messages_from(
    items: &[Value],
    role_key: &str,
    content_key: &str,
) -> Result<Vec<Message>, String> {
    items
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let name = m.get(role_key).and_then(Value::as_str);
            let content = m.get(content_key).and_then(text);
            match (name, content) {
                (Some(r), Some(c)) => Ok(Message {
                    role: role(r),
                    content: c,
                }),
                _ => Err(format!(
                    "message {} lacks a string `{role_key}` or `{content_key}`",
                    i + 1
                )),
            }
        })
        .collect()
}

/// Maps one raw record. `Err` carries the reason for the reject.
pub fn standardize(
    raw: &Map<String, Value>,
    line: u64,
    format: SourceFormat,
    default_source: &str,
) -> Result<Record, String> {
    let shape = detect(raw).ok_or_else(|| {
        "unrecognised record shape: expected `messages`, `conversations`, or a question/answer pair"
            .to_string()
    })?;
    if !allowed(format, shape) {
        return Err(format!("record is {shape:?} but source_format is {format}"));
    }
    let messages = match shape {
        Shape::Chat => messages_from(
            raw["messages"].as_array().map_or(&[][..], Vec::as_slice),
            "role",
            "content",
        )?,
        Shape::ShareGpt => messages_from(
            raw["conversations"]
                .as_array()
                .map_or(&[][..], Vec::as_slice),
            "from",
            "value",
        )?,
        Shape::QuestionAnswer => {
            let (q, a) = QA_KEYS
                .iter()
                .find(|(q, a)| raw.contains_key(*q) && raw.contains_key(*a))
                .copied()
                .unwrap_or(("question", "answer"));
            let mut question = raw
                .get(q)
                .and_then(text)
                .ok_or(format!("`{q}` is not text"))?;
            if q == "instruction"
                && let Some(extra) = raw.get("input").and_then(text).filter(|s| !s.is_empty())
            {
                question = format!("{question}\n\n{extra}");
            }
            let answer = raw
                .get(a)
                .and_then(text)
                .ok_or(format!("`{a}` is not text"))?;
            vec![
                Message {
                    role: "user".into(),
                    content: question,
                },
                Message {
                    role: "assistant".into(),
                    content: answer,
                },
            ]
        }
    };
    let source = raw
        .get("source")
        .and_then(Value::as_str)
        .map(|s| s.nfc().collect::<String>().trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| default_source.to_string());
    let id = match raw.get("id") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        Some(Value::Number(n)) => n.to_string(),
        _ => format!("{source}:{line}"),
    };
    let metadata = match raw.get("metadata") {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    Ok(Record {
        id,
        source,
        messages,
        metadata,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn chat_jsonl() {
        let r = standardize(
            &obj(json!({"id": "c1", "messages": [{"role": "Client", "content": "  I feel low.  "}, {"role": "therapist", "content": "Tell me more."}]})),
            1,
            SourceFormat::Auto,
            "ds",
        )
        .unwrap();
        assert_eq!(r.id, "c1");
        assert_eq!(r.messages[0].role, "client");
        assert_eq!(r.messages[0].content, "I feel low.");
    }

    #[test]
    fn sharegpt_maps_roles() {
        let r = standardize(
            &obj(json!({"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]})),
            7,
            SourceFormat::ShareGpt,
            "ds",
        )
        .unwrap();
        assert_eq!(r.id, "ds:7");
        assert_eq!(
            r.messages
                .iter()
                .map(|m| m.role.as_str())
                .collect::<Vec<_>>(),
            ["user", "assistant"]
        );
    }

    #[test]
    fn question_answer_variants() {
        for (q, a) in QA_KEYS {
            let r = standardize(
                &obj(json!({*q: "Why?", *a: "Because."})),
                2,
                SourceFormat::Auto,
                "ds",
            )
            .unwrap();
            assert_eq!(r.messages.len(), 2, "{q}/{a}");
            assert_eq!(r.messages[1].content, "Because.");
        }
        let r = standardize(
            &obj(json!({"instruction": "Summarise", "input": "the text", "output": "ok"})),
            2,
            SourceFormat::QaJson,
            "ds",
        )
        .unwrap();
        assert_eq!(r.messages[0].content, "Summarise\n\nthe text");
    }

    #[test]
    fn nfc_normalises_combining_marks() {
        let decomposed = "cafe\u{301}";
        let r = standardize(
            &obj(json!({"question": decomposed, "answer": "x"})),
            1,
            SourceFormat::Auto,
            "d",
        )
        .unwrap();
        assert_eq!(r.messages[0].content, "caf\u{e9}");
    }

    #[test]
    fn rejects_unknown_shapes_and_format_mismatch() {
        assert!(standardize(&obj(json!({"text": "x"})), 1, SourceFormat::Auto, "d").is_err());
        assert!(
            standardize(
                &obj(json!({"question": "a", "answer": "b"})),
                1,
                SourceFormat::ChatJsonl,
                "d"
            )
            .unwrap_err()
            .contains("source_format")
        );
        assert!(
            standardize(
                &obj(json!({"messages": [{"role": "user"}]})),
                1,
                SourceFormat::Auto,
                "d"
            )
            .is_err()
        );
    }
}

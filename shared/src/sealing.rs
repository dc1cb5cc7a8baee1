//! Sensitive task payload fields. A submitter lists JSON Pointers in `sensitive_fields`; each
//! pointed-to value is replaced at rest by `{"$sealed": "v1:<key id>:<nonce+ciphertext>"}`
//! (AES-256-GCM over the value's JSON). API reads show `{"$sealed": "<key id>"}`; the worker or
//! agent that runs the task receives the original values.

use serde_json::{Map, Value};

use crate::{
    Error, Result,
    crypto::{KeyRing, sealed_key_id},
};

pub const MARKER: &str = "$sealed";
/// The most fields one task may mark sensitive.
pub const MAX_FIELDS: usize = 32;

fn sealed_str(v: &Value) -> Option<&str> {
    match v {
        Value::Object(m) if m.len() == 1 => m.get(MARKER)?.as_str(),
        _ => None,
    }
}

/// Whether client input already holds a sealed-value marker (refused: only the service seals).
pub fn contains_marker(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.contains_key(MARKER) || m.values().any(contains_marker),
        Value::Array(a) => a.iter().any(contains_marker),
        _ => false,
    }
}

/// `{"$sealed": content}`: a sealed value at rest, or its key id in a read.
fn marker(content: String) -> Value {
    Value::Object(Map::from_iter([(
        MARKER.to_string(),
        Value::String(content),
    )]))
}

/// Seals the values at `pointers`. An error names the pointer that does not resolve.
pub fn seal(payload: &mut Value, pointers: &[String], ring: &KeyRing) -> Result<(), String> {
    for pointer in pointers {
        if !pointer.starts_with('/') {
            return Err(format!(
                "{pointer:?} is not a JSON Pointer (it must start with /)"
            ));
        }
        let slot = payload
            .pointer_mut(pointer)
            .ok_or_else(|| format!("{pointer:?} does not point into the payload"))?;
        if sealed_str(slot).is_some() {
            continue;
        }
        let sealed = ring
            .seal(slot.to_string().as_bytes())
            .map_err(|e| e.to_string())?;
        *slot = marker(sealed);
    }
    Ok(())
}

/// Visits every sealed value, replacing it with what `f` returns for its sealed string.
fn walk(v: &mut Value, f: &mut impl FnMut(&str) -> Result<Option<Value>>) -> Result<()> {
    if let Some(s) = sealed_str(v) {
        if let Some(new) = f(s)? {
            *v = new;
        }
        return Ok(());
    }
    match v {
        Value::Object(m) => m.values_mut().try_for_each(|c| walk(c, f)),
        Value::Array(a) => a.iter_mut().try_for_each(|c| walk(c, f)),
        _ => Ok(()),
    }
}

/// The payload as the task's runner needs it: every sealed value opened.
pub fn open(payload: &mut Value, ring: &KeyRing) -> Result<()> {
    walk(payload, &mut |s| {
        let plain = ring.open(s)?;
        serde_json::from_slice(&plain)
            .map(Some)
            .map_err(|e| Error::Crypto(format!("sealed value is not JSON: {e}")))
    })
}

/// The payload as API readers see it: each sealed value shows only its key id.
pub fn mask(payload: &mut Value) {
    let _ = walk(payload, &mut |s| {
        Ok(Some(marker(sealed_key_id(s).unwrap_or("?").into())))
    });
}

/// [`mask`], by value: a result or payload as events and reads show it.
pub fn masked(mut value: Value) -> Value {
    mask(&mut value);
    value
}

/// Re-seals every value under the active key. Returns whether anything changed.
pub fn reseal(payload: &mut Value, ring: &KeyRing) -> Result<bool> {
    let mut changed = false;
    walk(payload, &mut |s| {
        Ok(ring.reseal(s)?.map(|new| {
            changed = true;
            marker(new)
        }))
    })?;
    Ok(changed)
}

/// The ids of the keys that sealed the values in `v`, each once.
pub fn key_ids(v: &Value) -> std::collections::BTreeSet<String> {
    let mut ids = std::collections::BTreeSet::new();
    let mut v = v.clone();
    let _ = walk(&mut v, &mut |s| {
        ids.insert(sealed_key_id(s).unwrap_or("?").to_string());
        Ok(None)
    });
    ids
}

/// Where `stored` holds sealed values: JSON Pointers.
fn sealed_pointers(v: &Value, at: &mut String, out: &mut Vec<String>) {
    if sealed_str(v).is_some() {
        out.push(at.clone());
        return;
    }
    let mut visit = |key: &str, child: &Value, at: &mut String| {
        let len = at.len();
        at.push('/');
        at.push_str(&key.replace('~', "~0").replace('/', "~1"));
        sealed_pointers(child, at, out);
        at.truncate(len);
    };
    match v {
        Value::Object(m) => m.iter().for_each(|(k, c)| visit(k, c, at)),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, c)| visit(&i.to_string(), c, at)),
        _ => {}
    }
}

/// Puts the sealed form back wherever `result` repeats a sensitive value at the place the
/// payload had it (a handler echoing its input), so results never store it in clear.
pub fn keep_sealed(result: &mut Value, stored: &Value, opened: &Value) {
    let mut pointers = Vec::new();
    sealed_pointers(stored, &mut String::new(), &mut pointers);
    for p in pointers {
        let (Some(clear), Some(sealed)) = (opened.pointer(&p), stored.pointer(&p)) else {
            continue;
        };
        if let Some(slot) = result.pointer_mut(&p)
            && slot == clear
        {
            *slot = sealed.clone();
        }
        // Echoed somewhere else: a value distinctive enough to be the sensitive one is sealed
        // wherever it sits (a `1` or `true` elsewhere is far more likely to be something else).
        if distinctive(clear) {
            seal_copies(result, clear, sealed);
        }
    }
}

fn distinctive(v: &Value) -> bool {
    match v {
        Value::String(s) => s.chars().count() >= 4,
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
        _ => false,
    }
}

fn seal_copies(v: &mut Value, clear: &Value, sealed: &Value) {
    if v == clear {
        *v = sealed.clone();
        return;
    }
    match v {
        Value::Object(m) => m.values_mut().for_each(|c| seal_copies(c, clear, sealed)),
        Value::Array(a) => a.iter_mut().for_each(|c| seal_copies(c, clear, sealed)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn copies_echoed_anywhere_in_a_result_stay_sealed() {
        let ring = KeyRing::new("root", None).unwrap();
        let mut stored = json!({"ssn": "123-45-6789", "pin": 7, "name": "Ann"});
        let opened = stored.clone();
        seal(&mut stored, &["/ssn".into(), "/pin".into()], &ring).unwrap();
        let mut result = json!({
            "ssn": "123-45-6789",
            "echo": {"ssn": "123-45-6789", "list": ["123-45-6789", "other"]},
            "pin": 7,
            "count": 7,
        });
        keep_sealed(&mut result, &stored, &opened);
        assert!(!result.to_string().contains("123-45-6789"), "{result}");
        assert_eq!(result["echo"]["list"][1], "other");
        assert_eq!(
            result["pin"], stored["pin"],
            "at its own place even when short"
        );
        assert_eq!(result["count"], 7, "a short value elsewhere is left alone");
    }

    #[test]
    fn sealed_fields_round_trip_and_mask() {
        let ring = KeyRing::new("root", None).unwrap();
        let mut p = json!({"user": {"ssn": "123-45-6789", "name": "Ann"}, "token": ["a", 1]});
        let original = p.clone();
        seal(&mut p, &["/user/ssn".into(), "/token".into()], &ring).unwrap();
        let stored = p.to_string();
        assert!(!stored.contains("123-45-6789") && !stored.contains("\"a\""));
        assert_eq!(p["user"]["name"], "Ann");
        let mut masked = p.clone();
        mask(&mut masked);
        assert_eq!(masked["user"]["ssn"][MARKER], ring.active_key_id());
        let mut opened = p.clone();
        open(&mut opened, &ring).unwrap();
        assert_eq!(opened, original);
        assert!(seal(&mut p, &["/missing".into()], &ring).is_err());
        assert!(seal(&mut p, &["user".into()], &ring).is_err());
        assert!(
            !reseal(&mut p, &ring).unwrap(),
            "already under the active key"
        );
        let mut echoed = original.clone();
        keep_sealed(&mut echoed, &p, &original);
        assert_eq!(
            echoed, p,
            "an echoed payload keeps its sealed fields sealed"
        );
    }
}

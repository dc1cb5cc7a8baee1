//! JSON Schemas for tool arguments, generated from the same poem-openapi types the REST API
//! documents: a type's OpenAPI schema, with the schemas it refers to under `$defs`.

use poem_openapi::{
    registry::{MetaSchemaRef, Registry},
    types::Type,
};
use rmcp::model::JsonObject;
use serde_json::{Map, Value};

/// The JSON Schema of `T`, self-contained.
pub fn of<T: Type>() -> JsonObject {
    let mut registry = Registry::new();
    T::register(&mut registry);
    let mut root = match T::schema_ref() {
        MetaSchemaRef::Inline(schema) => to_value(&*schema),
        MetaSchemaRef::Reference(name) => registry
            .schemas
            .get(&name)
            .map(to_value)
            .unwrap_or_else(|| Value::Object(Map::new())),
    };
    let defs: Map<String, Value> = registry
        .schemas
        .iter()
        .map(|(name, schema)| (name.clone(), to_value(schema)))
        .collect();
    if let Value::Object(object) = &mut root {
        object.insert("type".into(), Value::String("object".into()));
        if !defs.is_empty() {
            object.insert("$defs".into(), Value::Object(defs));
        }
    }
    let mut root = rewrite_refs(root);
    match root.as_object_mut() {
        Some(object) => std::mem::take(object),
        None => JsonObject::new(),
    }
}

fn to_value<S: serde::Serialize>(schema: &S) -> Value {
    serde_json::to_value(schema).unwrap_or_else(|_| Value::Object(Map::new()))
}

/// OpenAPI puts named schemas under `#/components/schemas/`; a standalone schema keeps them in
/// its own `$defs`.
fn rewrite_refs(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => (
                        k,
                        Value::String(r.replace("#/components/schemas/", "#/$defs/")),
                    ),
                    (_, v) => (k, rewrite_refs(v)),
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(rewrite_refs).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::CreateTaskRequest;

    #[test]
    fn the_task_request_schema_is_standalone() {
        let schema = Value::Object(of::<CreateTaskRequest>());
        assert_eq!(schema["type"], "object");
        assert!(schema["properties"]["payload"].is_object(), "{schema}");
        assert!(
            schema["required"]
                .as_array()
                .is_some_and(|r| r.iter().any(|f| f == "type")),
            "{schema}"
        );
        let text = schema.to_string();
        assert!(!text.contains("#/components/"), "{text}");
    }
}

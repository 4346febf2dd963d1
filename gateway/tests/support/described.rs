//! Answers checked against the API description (GET /openapi.json, made by
//! hatchat_gateway::openapi from the handlers and hatchat_wire::shapes): the schema the document
//! gives for (method, path template, status), validated with the `jsonschema` crate. An answer
//! with a status the document does not list for that operation fails too.

use serde_json::{json, Value};
use std::sync::OnceLock;

fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        serde_json::from_str(hatchat_gateway::routes::document()).expect("the document is JSON")
    })
}

/// The document's answer `status` to `method template` (a `$ref` to the shared responses
/// followed): its description, headers and content by media type.
pub fn response(method: &str, template: &str, status: u16) -> &'static Value {
    let doc = document();
    let operation = &doc["paths"][template][method.to_lowercase()];
    assert!(operation.is_object(), "{method} {template} is not in the API description");
    let response = &operation["responses"][status.to_string()];
    assert!(response.is_object(), "the API description lists no {status} answer for {method} {template}");
    match response["$ref"].as_str() {
        Some(name) => &doc["components"]["responses"][name.rsplit('/').next().unwrap()],
        None => response,
    }
}

/// The schema of the JSON answer `status` to `method template`, `$ref`s to the document's
/// components kept resolvable (they point into the same document).
pub fn schema(method: &str, template: &str, status: u16) -> Value {
    let doc = document();
    let response = response(method, template, status);
    let schema = response["content"]["application/json"]["schema"].clone();
    assert!(schema.is_object(), "no JSON schema for {status} of {method} {template}");
    json!({"$schema": "https://json-schema.org/draft/2020-12/schema", "allOf": [schema], "components": doc["components"]})
}

/// Panics, naming every mismatch, unless `body` fits the document's schema for this answer.
#[track_caller]
pub fn check(method: &str, template: &str, status: u16, body: &Value) {
    let schema = schema(method, template, status);
    let validator = jsonschema::validator_for(&schema).expect("the document's schema compiles");
    let errors: Vec<String> =
        validator.iter_errors(body).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "{method} {template} answered {status} {body}, not as described: {errors:?}");
}

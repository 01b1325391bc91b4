//! Checks live responses against `openapi.yaml`: the status code must be
//! declared for the operation, the content type must be one it declares,
//! and a JSON body must validate against the declared schema (JSON Schema
//! 2020-12, as OpenAPI 3.1 uses; format assertions on).

#![allow(dead_code)]

use std::path::Path;

use serde_json::Value;

/// One response, as seen by a client.
#[derive(Debug, Clone)]
pub struct Seen<'a> {
    pub method: &'a str,
    /// The path as requested (query strings are ignored).
    pub path: &'a str,
    pub status: u16,
    pub content_type: Option<&'a str>,
    pub request_id: Option<&'a str>,
    pub body: &'a str,
}

/// The parsed document and a schema compiler over it.
pub struct OpenApi {
    pub doc: Value,
    compiler: boon::Compiler,
    schemas: boon::Schemas,
    /// Neon's 3.0 document lacks `nullable`: a null counts as an absent field.
    null_as_absent: bool,
    /// How the document is named in messages.
    name: &'static str,
}

/// `v` without its null-valued object fields, at any depth.
fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_nulls).collect()),
        other => other.clone(),
    }
}

const DOC_URL: &str = "http://compute-ctl.invalid/openapi.json";

/// JSON-pointer escaping of one reference token.
fn esc(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

impl OpenApi {
    /// Loads `openapi.yaml` from the repository root.
    pub fn load() -> Self {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.yaml");
        let text = std::fs::read_to_string(&path).expect("openapi.yaml is readable");
        let doc: Value = serde_norway::from_str(&text).expect("openapi.yaml is valid YAML");
        Self::new(doc, boon::Draft::V2020_12, false, "openapi.yaml")
    }

    /// Neon's OpenAPI 3.0 contract (`openapi_spec.yaml`, its text given):
    /// schemas read as JSON Schema draft 4, a null as an absent field.
    pub fn neon(text: &str) -> Self {
        let doc: serde_norway::Value =
            serde_norway::from_str(text).expect("Neon's contract is YAML");
        // Response codes are YAML integers there; JSON object keys are strings.
        let doc: Value = serde_json::to_value(&doc).expect("Neon's contract as JSON");
        Self::new(doc, boon::Draft::V4, true, "Neon's openapi_spec.yaml")
    }

    fn new(doc: Value, draft: boon::Draft, null_as_absent: bool, name: &'static str) -> Self {
        let mut compiler = boon::Compiler::new();
        compiler.set_default_draft(draft);
        compiler.enable_format_assertions();
        compiler
            .add_resource(DOC_URL, doc.clone())
            .expect("the document is a resource");
        Self {
            doc,
            compiler,
            schemas: boon::Schemas::new(),
            null_as_absent,
            name,
        }
    }

    /// Every documented operation as (METHOD, path).
    pub fn operations(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (path, item) in self.doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                out.push((method.to_uppercase(), path.clone()));
            }
        }
        out
    }

    /// Follows a `$ref` of a response object; returns its JSON pointer.
    fn resolve(&self, pointer: String) -> String {
        match self.doc.pointer(&pointer).and_then(|r| r["$ref"].as_str()) {
            Some(r) => r.trim_start_matches('#').to_string(),
            None => pointer,
        }
    }

    /// The pointer of the response object that documents `seen`.
    fn response_pointer(&self, seen: &Seen<'_>) -> Result<String, String> {
        let path = seen.path.split('?').next().unwrap_or(seen.path);
        let item = self.doc["paths"].get(path);
        let generic = |name: &str| format!("/components/responses/{name}");
        let pointer = match (item, seen.status) {
            (None, 404) => generic("NotFound"),
            (None, _) => {
                return Err(format!(
                    "{path} is not documented and answered {}",
                    seen.status
                ));
            }
            (Some(item), 405) if item.get(seen.method.to_lowercase()).is_none() => {
                generic("MethodNotAllowed")
            }
            (Some(item), status) => {
                let method = seen.method.to_lowercase();
                let op = item
                    .get(&method)
                    .ok_or_else(|| format!("{} {path} is not documented", seen.method))?;
                if op["responses"].get(status.to_string()).is_none() {
                    return Err(format!(
                        "{} {path} answered {status}, which {} does not declare",
                        seen.method, self.name
                    ));
                }
                format!("/paths/{}/{method}/responses/{status}", esc(path))
            }
        };
        Ok(self.resolve(pointer))
    }

    /// Checks one response; `Err` says what does not match.
    pub fn check(&mut self, seen: &Seen<'_>) -> Result<(), String> {
        let what = format!("{} {} -> {}", seen.method, seen.path, seen.status);
        if seen.request_id.is_none_or(str::is_empty) {
            return Err(format!("{what}: no X-Request-Id"));
        }
        let pointer = self
            .response_pointer(seen)
            .map_err(|e| format!("{what}: {e}"))?;
        let Some(content) = self.doc.pointer(&format!("{pointer}/content")).cloned() else {
            return Ok(());
        };
        let ct = seen.content_type.unwrap_or("");
        let declared: Vec<&String> = content.as_object().expect("content").keys().collect();
        let media = declared
            .iter()
            .find(|k| ct == k.as_str() || ct.starts_with(&format!("{k};")))
            .ok_or_else(|| format!("{what}: content type {ct:?} is not one of {declared:?}"))?;
        if media.as_str() != "application/json" {
            return Ok(());
        }
        let mut body: Value = serde_json::from_str(seen.body)
            .map_err(|e| format!("{what}: body is not JSON ({e}): {}", seen.body))?;
        if self.null_as_absent {
            body = strip_nulls(&body);
        }
        let loc = format!("{DOC_URL}#{pointer}/content/{}/schema", esc(media));
        let idx = self
            .compiler
            .compile(&loc, &mut self.schemas)
            .map_err(|e| format!("{what}: the declared schema does not compile: {e:#}"))?;
        self.schemas.validate(&body, idx).map_err(|e| {
            format!(
                "{what}: body does not match {}: {e:#}\nbody: {body}",
                self.name
            )
        })
    }
}

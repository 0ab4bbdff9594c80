//! A request's JSON object body into a typed value, with an error that names the field at fault
//! (feature `json-body`). The server's extractors and its webhook handlers answer these as 400s
//! (`{"field": "labelIds[2]"}`); kept here, free of HTTP, so that `fuzz/` can feed it any bytes.

use serde::de::DeserializeOwned;

/// Why a body was refused: the field (`body` for the body as a whole, else the path such as
/// `title` or `labels[1]`) and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyError {
    pub field: String,
    pub message: String,
}

impl BodyError {
    fn body(message: impl Into<String>) -> Self {
        BodyError {
            field: "body".into(),
            message: message.into(),
        }
    }
}

/// Parses `bytes` as a JSON object into `T`. Blank bodies, malformed JSON and bodies that are
/// not objects are refused as a whole; a wrong type or a missing field names its path. Numbers
/// written as integral floats (`1.0`, `2e0`) are read as integers.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BodyError> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(BodyError::body("a JSON body is required"));
    }
    let mut value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| BodyError::body(format!("malformed JSON at body: {e}")))?;
    if !value.is_object() {
        // serde would read an array into a struct field by field.
        return Err(BodyError::body("the body must be a JSON object"));
    }
    integral_floats_as_integers(&mut value);
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let field = if path == "." || path.is_empty() {
            // serde names a missing field only in the message: `missing field `title``.
            let msg = inner.to_string();
            msg.split('`')
                .nth(1)
                .filter(|_| msg.starts_with("missing field"))
                .unwrap_or("body")
                .to_string()
        } else {
            path
        };
        BodyError {
            message: format!("invalid value at {field}: {inner}"),
            field,
        }
    })
}

/// `3.0` is the integer 3 in JSON (and in JSON Schema's `"type": "integer"`); serde's integer
/// fields would refuse it, so integral floats in the integer range become integers first.
fn integral_floats_as_integers(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
            {
                if (0.0..18_446_744_073_709_551_616.0).contains(&f) {
                    *v = Value::from(f as u64);
                } else if (-9_223_372_036_854_775_808.0..0.0).contains(&f) {
                    *v = Value::from(f as i64);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(integral_floats_as_integers),
        Value::Object(m) => m.values_mut().for_each(integral_floats_as_integers),
        _ => {}
    }
}

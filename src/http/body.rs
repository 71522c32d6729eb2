//! Reading request bodies under the contract's rules: the 8 MiB limit
//! (answered with `413 payload_too_large`, after draining, never a dropped
//! connection), content types (`415`), malformed JSON (`400`), and typed
//! field access that reports `unknown_field` / `invalid_field` /
//! `invalid_time` exactly.

use actix_web::HttpRequest;
use actix_web::web::{self, Bytes, BytesMut};
use futures_util::StreamExt;
use serde_json::{Map, Value};

use super::error::{ApiError, Code};
use crate::domain::{AreaPath, PersonId, Timestamp};

/// The most a request body may hold.
pub const MAX_BODY: usize = 8 * 1024 * 1024;
/// Past this, a too-large body is no longer drained: the connection closes.
const DRAIN_LIMIT: usize = 256 * 1024 * 1024;

/// Reads the whole body, refusing more than [`MAX_BODY`].
pub async fn read(mut payload: web::Payload) -> Result<Bytes, ApiError> {
    let mut buf = BytesMut::new();
    let mut total = 0usize;
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| match e {
            actix_web::error::PayloadError::Overflow => too_large(),
            other => ApiError::new(
                Code::MalformedJson,
                format!("reading the body failed: {other}"),
            ),
        })?;
        total += chunk.len();
        if total > MAX_BODY {
            if total > DRAIN_LIMIT {
                return Err(too_large());
            }
            continue;
        }
        buf.extend_from_slice(&chunk);
    }
    if total > MAX_BODY {
        return Err(too_large());
    }
    Ok(buf.freeze())
}

fn too_large() -> ApiError {
    ApiError::new(Code::PayloadTooLarge, "the body is over 8 MiB")
}

fn media_type(req: &HttpRequest) -> String {
    req.headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// A JSON body's bytes, unparsed: `application/json` (or `+json`), at most
/// 8 MiB. For callers that parse it straight into their own types.
pub async fn json_bytes(req: &HttpRequest, payload: web::Payload) -> Result<Bytes, ApiError> {
    let mt = media_type(req);
    let bytes = read(payload).await?;
    if !(mt == "application/json" || mt.ends_with("+json")) {
        return Err(ApiError::new(
            Code::UnsupportedMediaType,
            "send the body as Content-Type: application/json",
        ));
    }
    Ok(bytes)
}

/// A JSON body: `application/json` (or `+json`), at most 8 MiB, well formed.
pub async fn json(req: &HttpRequest, payload: web::Payload) -> Result<Value, ApiError> {
    let bytes = json_bytes(req, payload).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            Code::MalformedJson,
            format!("the body is not valid JSON: {e}"),
        )
    })
}

/// An optional JSON body: empty is fine, else as [`json`].
pub async fn optional_json(
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<Option<Value>, ApiError> {
    let mt = media_type(req);
    let bytes = read(payload).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    if !(mt == "application/json" || mt.ends_with("+json")) {
        return Err(ApiError::new(
            Code::UnsupportedMediaType,
            "send the body as Content-Type: application/json",
        ));
    }
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        ApiError::new(
            Code::MalformedJson,
            format!("the body is not valid JSON: {e}"),
        )
    })
}

/// The media type of an XLSX workbook.
pub const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

/// A file upload: CSV (`text/csv`) or an XLSX workbook, at most 8 MiB.
pub async fn table(
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<(crate::domain::FileKind, Bytes), ApiError> {
    use crate::domain::FileKind;
    let mt = media_type(req);
    let bytes = read(payload).await?;
    let kind = match mt.as_str() {
        "text/csv" | "application/csv" | "text/plain" => FileKind::Csv,
        XLSX => FileKind::Xlsx,
        _ => {
            return Err(ApiError::new(
                Code::UnsupportedMediaType,
                format!("send the file as Content-Type: text/csv or {XLSX}"),
            ));
        }
    };
    Ok((kind, bytes))
}

/// Typed access to the fields of one JSON object. Every field read is
/// remembered; [`Fields::finish`] rejects the rest as unknown.
pub struct Fields {
    map: Map<String, Value>,
    seen: Vec<&'static str>,
}

impl Fields {
    /// The body must be a JSON object.
    pub fn object(v: Value) -> Result<Fields, ApiError> {
        match v {
            Value::Object(map) => Ok(Fields {
                map,
                seen: Vec::new(),
            }),
            _ => Err(ApiError::new(
                Code::InvalidField,
                "the body must be a JSON object",
            )),
        }
    }

    /// The field as sent, `null` included: `null` is not a value (docs/api.md),
    /// so each accessor refuses it like any other wrong type.
    fn get(&mut self, k: &'static str) -> Option<&Value> {
        self.seen.push(k);
        self.map.get(k)
    }

    /// A required field, with `null` taken as missing.
    fn required(&mut self, k: &'static str) -> Result<&Value, ApiError> {
        match self.get(k) {
            None | Some(Value::Null) => Err(ApiError::new(
                Code::InvalidField,
                format!("`{k}` is required (null is not a value)"),
            )),
            Some(v) => Ok(v),
        }
    }

    /// A required non-empty string.
    pub fn str(&mut self, k: &'static str) -> Result<String, ApiError> {
        self.opt_str(k)?
            .ok_or_else(|| ApiError::new(Code::InvalidField, format!("`{k}` is required")))
    }

    /// An optional string (absent → None); empty strings and `null` refused.
    pub fn opt_str(&mut self, k: &'static str) -> Result<Option<String>, ApiError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
            Some(_) => Err(ApiError::new(
                Code::InvalidField,
                format!("`{k}` must be a non-empty string"),
            )),
        }
    }

    /// An optional string that may be empty (notes); `null` refused.
    pub fn opt_text(&mut self, k: &'static str) -> Result<Option<String>, ApiError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::String(s)) if s.chars().count() <= 1000 => Ok(Some(s.clone())),
            Some(_) => Err(ApiError::new(
                Code::InvalidField,
                format!("`{k}` must be a string of at most 1000 characters"),
            )),
        }
    }

    /// A required time: RFC 3339 with an explicit offset.
    pub fn time(&mut self, k: &'static str) -> Result<Timestamp, ApiError> {
        match self.required(k)? {
            Value::String(s) => Timestamp::parse(s).map_err(|e| {
                ApiError::new(
                    Code::InvalidTime,
                    format!("`{k}`: {e} (RFC 3339 with an offset)"),
                )
            }),
            _ => Err(ApiError::new(
                Code::InvalidTime,
                format!("`{k}` must be an RFC 3339 time with an offset"),
            )),
        }
    }

    /// A required person ID.
    pub fn person_id(&mut self, k: &'static str) -> Result<PersonId, ApiError> {
        match self.required(k)? {
            Value::String(s) => s
                .parse::<PersonId>()
                .map_err(|e| ApiError::new(Code::InvalidPersonId, format!("`{k}`: {e}"))),
            _ => Err(ApiError::new(
                Code::InvalidPersonId,
                format!("`{k}` must be a string"),
            )),
        }
    }

    /// A required non-empty array of area paths (`unknown_area` for a path
    /// that cannot exist).
    pub fn areas(&mut self, k: &'static str) -> Result<Vec<AreaPath>, ApiError> {
        match self.get(k) {
            Some(Value::Array(a)) if !a.is_empty() => a
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.parse::<AreaPath>().map_err(|e| {
                        ApiError::new(
                            Code::UnknownArea,
                            format!("`{k}`: {s:?} is not an area: {e}"),
                        )
                    }),
                    _ => Err(ApiError::new(
                        Code::InvalidField,
                        format!("`{k}` must hold area paths as strings"),
                    )),
                })
                .collect(),
            _ => Err(ApiError::new(
                Code::InvalidField,
                format!("`{k}` must be a non-empty array of area paths"),
            )),
        }
    }

    /// Rejects any key that was not read.
    pub fn finish(self) -> Result<(), ApiError> {
        match self.map.keys().find(|k| !self.seen.contains(&k.as_str())) {
            Some(k) => Err(ApiError::new(
                Code::UnknownField,
                format!("unknown field `{k}`"),
            )),
            None => Ok(()),
        }
    }

    /// Checks for unknown keys first (before field errors), without consuming.
    pub fn check_known(&self, known: &[&str]) -> Result<(), ApiError> {
        match self.map.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(ApiError::new(
                Code::UnknownField,
                format!("unknown field `{k}`"),
            )),
            None => Ok(()),
        }
    }
}

/// The query string as key → value, refusing a malformed one and any key
/// not in `known` (`400 invalid_query`).
pub fn query(
    req: &HttpRequest,
    known: &[&str],
) -> Result<std::collections::HashMap<String, String>, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string())
        .map_err(|e| ApiError::new(Code::InvalidQuery, format!("malformed query string: {e}")))?;
    let mut map = std::collections::HashMap::new();
    for (k, v) in pairs {
        if !known.contains(&k.as_str()) {
            return Err(ApiError::new(
                Code::InvalidQuery,
                format!("unknown query parameter `{k}`"),
            ));
        }
        if map.insert(k.clone(), v).is_some() {
            return Err(ApiError::new(
                Code::InvalidQuery,
                format!("`{k}` given twice"),
            ));
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(v: Value) -> Fields {
        Fields::object(v).unwrap()
    }

    #[test]
    fn null_in_an_optional_field_is_invalid_field_not_absent() {
        let mut f = fields(json!({"note": null, "area": null}));
        assert_eq!(f.opt_text("note").unwrap_err().code, Code::InvalidField);
        assert_eq!(f.opt_str("area").unwrap_err().code, Code::InvalidField);
        // Absent is still fine.
        let mut f = fields(json!({}));
        assert_eq!(f.opt_text("note").unwrap(), None);
        assert_eq!(f.opt_str("area").unwrap(), None);
    }

    #[test]
    fn null_in_a_required_field_is_invalid_field() {
        let mut f = fields(json!({
            "name": null, "from": null, "person_id": null, "scope": null
        }));
        assert_eq!(f.str("name").unwrap_err().code, Code::InvalidField);
        assert_eq!(f.time("from").unwrap_err().code, Code::InvalidField);
        assert_eq!(
            f.person_id("person_id").unwrap_err().code,
            Code::InvalidField
        );
        assert_eq!(f.areas("scope").unwrap_err().code, Code::InvalidField);
        // Wrong types keep their field's code.
        let mut f = fields(json!({"from": 5, "person_id": 5}));
        assert_eq!(f.time("from").unwrap_err().code, Code::InvalidTime);
        assert_eq!(
            f.person_id("person_id").unwrap_err().code,
            Code::InvalidPersonId
        );
    }

    #[test]
    fn a_null_field_still_counts_as_read() {
        let mut f = fields(json!({"note": null}));
        let _ = f.opt_text("note");
        assert!(f.finish().is_ok());
    }
}

//! The builders every route file writes its OpenAPI operation and schemas
//! with: [`Op`] (one operation), the small schema helpers (`object`,
//! `json_response`, …), the shared parameters and bodies, and the error
//! responses made from [`Code`]. Nothing here names an endpoint.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::domain::{Role, area_path};
use crate::http::error::{Code, ItemCode};

// ---------------------------------------------------------------------------
// What each code means, for the responses' descriptions.
// ---------------------------------------------------------------------------

/// The general meaning of an error code. Exhaustive: a new [`Code`] must be
/// described here before the crate compiles.
pub(crate) fn code_meaning(c: Code) -> &'static str {
    match c {
        Code::Unauthorized => {
            "no `Authorization: Bearer <token>` header, or an unknown or revoked token"
        }
        Code::Forbidden => "the token's role may not do this",
        Code::OutOfScope => "the area, round or person is outside the official token's area",
        Code::MalformedJson => "the body is not well-formed JSON",
        Code::UnknownField => "a key the contract does not define",
        Code::InvalidField => {
            "a field is missing, null, of the wrong type or has a value outside its rules"
        }
        Code::InvalidTime => "a time that is not RFC 3339 with an explicit offset",
        Code::InvalidWindow => "the window ends before it starts",
        Code::UnknownArea => "an area path that is not in the register",
        Code::InvalidPersonId => "not a valid 18-character resident ID number (GB 11643-1999)",
        Code::InvalidQuery => {
            "a query parameter that is unknown, given twice, or has a value outside its allowed set"
        }
        Code::EmptyBatch => "the batch array is empty",
        Code::InvalidRegister => {
            "the CSV or XLSX file was rejected as a whole and nothing was changed; `lines` lists the first 100 problems"
        }
        Code::InvalidExemptions => {
            "the exemptions file was rejected as a whole and nothing was changed; `lines` lists the first 100 problems"
        }
        Code::BatchTooLarge => "more than 10,000 items in one batch",
        Code::PayloadTooLarge => {
            "the body is over 8 MiB (answered after reading it, not a dropped connection)"
        }
        Code::UnsupportedMediaType => {
            "the body's `Content-Type` is not the one this endpoint reads"
        }
        Code::UnknownToken => "no token has this id",
        Code::UnknownExemption => "no exemption has this id",
        Code::UnknownRound => "no round has this id (a non-numeric id included)",
        Code::UnknownResident => "no registered (not moved-out) resident has this ID",
        Code::RoundArchived => {
            "the round is archived (Retention): it no longer keeps what this view needs"
        }
        Code::NotFound => "no route has this path (an unknown file under `/docs/` included)",
        Code::MethodNotAllowed => {
            "the path is served, but not with this method; the `Allow` header lists the methods \
             that are (`HEAD` wherever `GET` is)"
        }
        Code::StorageUnavailable => {
            "the write could not be made durable (disk full, I/O error); nothing of the request was kept"
        }
        Code::Overloaded => {
            "the server is shedding writes it cannot finish in time; retry after `Retry-After` seconds"
        }
        Code::NotLeader => {
            "this server is a standby of several on one PostgreSQL store; the body's `leader` is \
             the leader's advertised URL (or `null`); retry there, or here after `Retry-After` seconds"
        }
        Code::Internal => "an unexpected failure; `request_id` names it in the server's log",
    }
}

pub(crate) fn item_code_meaning(c: ItemCode) -> &'static str {
    match c {
        ItemCode::InvalidField => {
            "the item is not an object, lacks a field, or a field is not a string"
        }
        ItemCode::UnknownField => "the item holds a key the contract does not define",
        ItemCode::InvalidPersonId => "`person_id` is not a valid resident ID number",
        ItemCode::InvalidTubeId => "`tube_id` is not 1–32 characters of `[A-Za-z0-9-]`",
        ItemCode::InvalidTime => {
            "the time has no offset, is more than 5 minutes in the future, or is older than 30 days"
        }
        ItemCode::InvalidResult => "`result` is neither `negative` nor `positive`",
        ItemCode::TubeFull => "the tube already holds the pool maximum (default 20 people)",
        ItemCode::TubeSiteConflict => "the tube was first used at another site",
        ItemCode::ConflictingResult => "the tube already has a different result",
    }
}

// ---------------------------------------------------------------------------
// Small builders.
// ---------------------------------------------------------------------------

pub(crate) fn r(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// A `$ref` that may also be `null` (OpenAPI 3.0 ignores siblings of `$ref`).
pub(crate) fn nullable_ref(name: &str) -> Value {
    json!({ "allOf": [r(name)], "nullable": true })
}

pub(crate) fn string(description: &str) -> Value {
    json!({ "type": "string", "description": description })
}

pub(crate) fn count(description: &str) -> Value {
    json!({ "type": "integer", "format": "int64", "minimum": 0, "description": description })
}

pub(crate) fn time(description: &str, nullable: bool) -> Value {
    let mut v = json!({
        "type": "string",
        "format": "date-time",
        "description": description,
        "example": "2022-04-19T08:15:00+08:00",
    });
    if nullable {
        v["nullable"] = json!(true);
    }
    v
}

pub(crate) fn enum_of<'a>(values: impl IntoIterator<Item = &'a str>) -> Value {
    json!({ "type": "string", "enum": values.into_iter().collect::<Vec<_>>() })
}

/// An object schema: `props` in order, `required` by name.
pub(crate) fn object(description: &str, required: &[&str], props: Vec<(&str, Value)>) -> Value {
    let mut p = Map::new();
    for (k, v) in props {
        p.insert(k.to_owned(), v);
    }
    let mut v = json!({ "type": "object", "properties": p });
    // OpenAPI 3.0 wants `required` non-empty when present.
    if !required.is_empty() {
        v["required"] = json!(required);
    }
    if !description.is_empty() {
        v["description"] = json!(description);
    }
    v
}

/// A request body object: unknown keys are rejected (`unknown_field`).
pub(crate) fn closed_object(
    description: &str,
    required: &[&str],
    props: Vec<(&str, Value)>,
) -> Value {
    let mut v = object(description, required, props);
    v["additionalProperties"] = json!(false);
    v
}

pub(crate) fn json_content(schema: Value) -> Value {
    let mut v = json!({ "application/json": {} });
    v["application/json"]["schema"] = schema;
    v
}

pub(crate) fn json_response(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": json_content(schema) })
}

pub(crate) fn path_param(name: &str, schema: Value, description: &str) -> Value {
    let mut v = json!({ "name": name, "in": "path", "required": true, "description": description });
    v["schema"] = schema;
    v
}

pub(crate) fn query_param(name: &str, schema: Value, description: &str) -> Value {
    let mut v =
        json!({ "name": name, "in": "query", "required": false, "description": description });
    v["schema"] = schema;
    v
}

pub(crate) fn retry_after() -> Value {
    json!({
        "Retry-After": {
            "description": "Sent with `overloaded`: seconds to wait before retrying.",
            "schema": { "type": "integer", "minimum": 1 }
        }
    })
}

/// The error responses of one operation: one per status, each naming its
/// codes in the description and narrowing the shared error schema's `code`
/// to them with an `enum`.
pub(crate) fn error_responses(codes: &[Code]) -> BTreeMap<String, Value> {
    let mut by_status: BTreeMap<u16, Vec<Code>> = BTreeMap::new();
    for &c in codes {
        let v = by_status.entry(c.status().as_u16()).or_default();
        if !v.contains(&c) {
            v.push(c);
        }
    }
    by_status
        .into_iter()
        .map(|(status, cs)| {
            let description = cs
                .iter()
                .map(|c| format!("`{}`: {}.", c.as_str(), code_meaning(*c)))
                .collect::<Vec<_>>()
                .join(" ");
            let base =
                if cs.contains(&Code::InvalidRegister) || cs.contains(&Code::InvalidExemptions) {
                    "RegisterError"
                } else {
                    "Error"
                };
            let schema = json!({
                "allOf": [
                    r(base),
                    {
                        "type": "object",
                        "properties": {
                            "error": {
                                "type": "object",
                                "properties": { "code": enum_of(cs.iter().map(|c| c.as_str())) }
                            }
                        }
                    }
                ]
            });
            let mut resp = json_response(&description, schema);
            if cs.contains(&Code::Overloaded) || cs.contains(&Code::NotLeader) {
                resp["headers"] = retry_after();
            }
            (status.to_string(), resp)
        })
        .collect()
}

/// One operation of the document.
pub(crate) struct Op {
    id: &'static str,
    tag: &'static str,
    summary: &'static str,
    /// How the server behaves where the contract leaves room, and so on.
    notes: String,
    params: Vec<Value>,
    body: Option<Value>,
    /// Success (and other non-error) responses by status.
    ok: Vec<(u16, Value)>,
    /// The error codes particular to it (statuses come from the codes).
    errors: Vec<Code>,
}

impl Op {
    /// An operation; its method, path and roles are its route table entry's
    /// (`routes::Endpoint`), given to [`Op::to_json`].
    pub(crate) fn new(id: &'static str, tag: &'static str, summary: &'static str) -> Op {
        Op {
            id,
            tag,
            summary,
            notes: String::new(),
            params: Vec::new(),
            body: None,
            ok: Vec::new(),
            errors: Vec::new(),
        }
    }

    pub(crate) fn notes(mut self, notes: impl Into<String>) -> Op {
        self.notes = notes.into();
        self
    }

    pub(crate) fn param(mut self, p: Value) -> Op {
        self.params.push(p);
        self
    }

    pub(crate) fn body(mut self, b: Value) -> Op {
        self.body = Some(b);
        self
    }

    pub(crate) fn ok(mut self, status: u16, resp: Value) -> Op {
        self.ok.push((status, resp));
        self
    }

    /// The codes particular to this operation; [`Op::to_json`] adds
    /// `unauthorized`, `forbidden` and `internal` to those of a call that
    /// needs a token.
    pub(crate) fn errors(mut self, codes: &[Code]) -> Op {
        self.errors.extend_from_slice(codes);
        self
    }

    /// The operation object, for a route open to `roles` (none: no token needed).
    pub(crate) fn to_json(&self, roles: &[Role]) -> Value {
        let who = if roles.is_empty() {
            "**No token needed.**".to_owned()
        } else {
            let names: Vec<String> = roles.iter().map(|r| format!("`{}`", r.as_str())).collect();
            format!("**Roles:** {}.", names.join(", "))
        };
        let description = if self.notes.is_empty() {
            who
        } else {
            format!("{who}\n\n{}", self.notes)
        };
        let mut responses = Map::new();
        for (status, resp) in &self.ok {
            responses.insert(status.to_string(), resp.clone());
        }
        let errors = if roles.is_empty() {
            self.errors.clone()
        } else {
            [
                &[Code::Unauthorized, Code::Forbidden][..],
                &self.errors,
                &[Code::Internal],
            ]
            .concat()
        };
        for (status, resp) in error_responses(&errors) {
            responses.insert(status, resp);
        }
        let mut op = json!({
            "operationId": self.id,
            "tags": [self.tag],
            "summary": self.summary,
            "description": description,
            "x-roles": roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
            "responses": responses,
        });
        if roles.is_empty() {
            op["security"] = json!([]);
        }
        if !self.params.is_empty() {
            op["parameters"] = json!(self.params);
        }
        if let Some(b) = &self.body {
            op["requestBody"] = b.clone();
        }
        op
    }
}

// ---------------------------------------------------------------------------
// Shared parameters and bodies.
// ---------------------------------------------------------------------------

pub(crate) fn round_id_param() -> Value {
    path_param(
        "id",
        r("RoundId"),
        "The round's id. An id that is not a positive whole number is `404 unknown_round`.",
    )
}

pub(crate) fn person_id_param() -> Value {
    path_param(
        "person_id",
        r("PersonId"),
        "The resident ID number (a lower-case `x` is accepted). A bad one is `400 invalid_person_id`.",
    )
}

pub(crate) fn area_query(default: &str) -> Value {
    query_param(
        "area",
        r("AreaPath"),
        &format!(
            "The area node to show (a whole path, URL-encoded). Not a valid path: `400 invalid_query`; \
             valid but not in the register: `400 unknown_area`; outside an official's area: \
             `403 out_of_scope`. Default: {default}"
        ),
    )
}

pub(crate) fn json_body(schema: Value, example: &Value) -> Value {
    let mut v = json!({
        "required": true,
        "description": "`Content-Type: application/json` (or any `+json` type); otherwise `415 unsupported_media_type`.",
        "content": { "application/json": { "example": example } }
    });
    v["content"]["application/json"]["schema"] = schema;
    v
}

pub(crate) fn csv_body(header: &str, example: &str) -> Value {
    json!({
        "required": true,
        "description": format!(
            "A CSV file with the header `{header}`, UTF-8. Sent as `text/csv` (`application/csv` and \
             `text/plain` are accepted too); any other type is `415 unsupported_media_type`."
        ),
        "content": {
            "text/csv": { "schema": { "type": "string", "description": format!("CSV with header `{header}`") }, "example": example }
        }
    })
}

/// A file upload that may also be a spreadsheet (register, heads, exemptions).
pub(crate) fn table_body(header: &str, example: &str) -> Value {
    let mut v = csv_body(header, example);
    v["description"] = json!(format!(
        "A CSV file with the header `{header}`, UTF-8, sent as `text/csv` (`application/csv` and \
         `text/plain` are accepted too); or an XLSX workbook sent as `{xlsx}`: its first sheet, \
         the first row the same header, every cell read as text (a number as its digits), \
         problems reported with `sheet` and `line` (the spreadsheet's row number). A workbook \
         that cannot be read is one problem on line 0. Any other type is \
         `415 unsupported_media_type`.",
        xlsx = crate::http::body::XLSX
    ));
    v["content"][crate::http::body::XLSX] = json!({
        "schema": { "type": "string", "format": "binary", "description": format!("XLSX, first sheet with header `{header}`") }
    });
    v
}

pub(crate) const JSON_BODY_ERRORS: [Code; 3] = [
    Code::MalformedJson,
    Code::UnsupportedMediaType,
    Code::PayloadTooLarge,
];
pub(crate) const WRITE_ERRORS: [Code; 3] =
    [Code::StorageUnavailable, Code::Overloaded, Code::NotLeader];

// ---------------------------------------------------------------------------
// The operations.
// ---------------------------------------------------------------------------

pub(crate) fn codes_list(codes: &[ItemCode]) -> String {
    codes
        .iter()
        .map(|c| format!("`{}` ({})", c.as_str(), item_code_meaning(*c)))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A string holding something other than whitespace (names: the server
/// refuses a blank one).
pub(crate) const NOT_BLANK: &str = "\\S";

/// The rules of [`crate::domain::AreaPath::parse`] a pattern can state: at
/// most 16 non-empty segments without control characters (Unicode `Cc`),
/// none starting or ending with whitespace (Unicode `White_Space`). The byte
/// limit is `maxLength`'s approximation; the server counts UTF-8 bytes.
pub(crate) fn area_path_pattern() -> String {
    const CONTROL: &str = "\\u0000-\\u001f\\u007f-\\u009f";
    const SPACE: &str = "\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
    let edge = format!("[^/{CONTROL}{SPACE}]");
    let inner = format!("[^/{CONTROL}]");
    let segment = format!("{edge}(?:{inner}*{edge})?");
    format!(
        "^{segment}(?:/{segment}){{0,{}}}$",
        area_path::MAX_SEGMENTS - 1
    )
}

//! The OpenAPI 3.0 document of `docs/api.md`, served at `/openapi.json` and browsed
//! with Swagger UI at `/docs`.
//!
//! Written out by hand as JSON (not derived from the handlers) because the
//! handlers read their bodies field by field to give the contract's exact
//! error codes; a derive would describe serde's behaviour, not theirs. Drift
//! is caught instead by what the document is built from and by tests:
//! error codes and their statuses come from [`Code::ALL`] / [`Code::as_str`] /
//! [`Code::status`], closed sets from the domain enums' `ALL`, limits from
//! the constants the server enforces; `tests/integration/openapi.rs` checks
//! that the document's operations are exactly `routes::ROUTES`, that each is
//! registered, and that every documented query value is accepted.
//!
//! Depends on `domain` and `http::{error, body, routes::records}` for those
//! constants; nothing depends on it but `routes::ops`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use crate::domain::register::MAX_PROBLEMS;
use crate::domain::{
    AuditAction, Colour, ExemptionReason, LineCode, ReasonCode, Role, TestResult, area_path,
    tube_id,
};
use crate::http::body::MAX_BODY;
use crate::http::error::{Code, ItemCode};
use crate::http::routes::batch::MAX_BATCH;

/// The deepest `depth` coverage accepts (the handler's bound).
pub const COVERAGE_MAX_DEPTH: u32 = 32;

const RECORD_ITEM_CODES: [ItemCode; 7] = [
    ItemCode::InvalidField,
    ItemCode::UnknownField,
    ItemCode::InvalidPersonId,
    ItemCode::InvalidTubeId,
    ItemCode::InvalidTime,
    ItemCode::TubeFull,
    ItemCode::TubeSiteConflict,
];

const RESULT_ITEM_CODES: [ItemCode; 6] = [
    ItemCode::InvalidField,
    ItemCode::UnknownField,
    ItemCode::InvalidTubeId,
    ItemCode::InvalidResult,
    ItemCode::InvalidTime,
    ItemCode::ConflictingResult,
];

/// The document. Built once; each call returns a copy.
pub fn document() -> Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(build).clone()
}

// ---------------------------------------------------------------------------
// What each code means, for the responses' descriptions.
// ---------------------------------------------------------------------------

/// The general meaning of an error code. Exhaustive: a new [`Code`] must be
/// described here before the crate compiles.
fn code_meaning(c: Code) -> &'static str {
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

fn item_code_meaning(c: ItemCode) -> &'static str {
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

fn r(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// A `$ref` that may also be `null` (OpenAPI 3.0 ignores siblings of `$ref`).
fn nullable_ref(name: &str) -> Value {
    json!({ "allOf": [r(name)], "nullable": true })
}

fn string(description: &str) -> Value {
    json!({ "type": "string", "description": description })
}

fn count(description: &str) -> Value {
    json!({ "type": "integer", "format": "int64", "minimum": 0, "description": description })
}

fn time(description: &str, nullable: bool) -> Value {
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

fn enum_of<'a>(values: impl IntoIterator<Item = &'a str>) -> Value {
    json!({ "type": "string", "enum": values.into_iter().collect::<Vec<_>>() })
}

/// An object schema: `props` in order, `required` by name.
fn object(description: &str, required: &[&str], props: Vec<(&str, Value)>) -> Value {
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
fn closed_object(description: &str, required: &[&str], props: Vec<(&str, Value)>) -> Value {
    let mut v = object(description, required, props);
    v["additionalProperties"] = json!(false);
    v
}

fn json_content(schema: Value) -> Value {
    let mut v = json!({ "application/json": {} });
    v["application/json"]["schema"] = schema;
    v
}

fn json_response(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": json_content(schema) })
}

fn path_param(name: &str, schema: Value, description: &str) -> Value {
    let mut v = json!({ "name": name, "in": "path", "required": true, "description": description });
    v["schema"] = schema;
    v
}

fn query_param(name: &str, schema: Value, description: &str) -> Value {
    let mut v =
        json!({ "name": name, "in": "query", "required": false, "description": description });
    v["schema"] = schema;
    v
}

fn retry_after() -> Value {
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
fn error_responses(codes: &[Code]) -> BTreeMap<String, Value> {
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
struct Op {
    method: &'static str,
    path: &'static str,
    id: &'static str,
    tag: &'static str,
    summary: &'static str,
    /// The roles whose tokens may call it; empty: no token needed.
    roles: &'static [Role],
    /// How the server behaves where the contract leaves room, and so on.
    notes: String,
    params: Vec<Value>,
    body: Option<Value>,
    /// Success (and other non-error) responses by status.
    ok: Vec<(u16, Value)>,
    /// Every error code it can answer (statuses come from the codes).
    errors: Vec<Code>,
}

impl Op {
    fn new(
        method: &'static str,
        path: &'static str,
        id: &'static str,
        tag: &'static str,
        summary: &'static str,
    ) -> Op {
        Op {
            method,
            path,
            id,
            tag,
            summary,
            roles: &[],
            notes: String::new(),
            params: Vec::new(),
            body: None,
            ok: Vec::new(),
            errors: Vec::new(),
        }
    }

    fn roles(mut self, roles: &'static [Role]) -> Op {
        self.roles = roles;
        self
    }

    fn notes(mut self, notes: impl Into<String>) -> Op {
        self.notes = notes.into();
        self
    }

    fn param(mut self, p: Value) -> Op {
        self.params.push(p);
        self
    }

    fn body(mut self, b: Value) -> Op {
        self.body = Some(b);
        self
    }

    fn ok(mut self, status: u16, resp: Value) -> Op {
        self.ok.push((status, resp));
        self
    }

    /// The codes of this operation; for a `/v1` call `unauthorized`,
    /// `forbidden` and `internal` are added.
    fn errors(mut self, codes: &[Code]) -> Op {
        if !self.roles.is_empty() {
            self.errors.extend([Code::Unauthorized, Code::Forbidden]);
        }
        self.errors.extend_from_slice(codes);
        if !self.roles.is_empty() {
            self.errors.push(Code::Internal);
        }
        self
    }

    fn to_json(&self) -> Value {
        let who = if self.roles.is_empty() {
            "**No token needed.**".to_owned()
        } else {
            let names: Vec<String> = self
                .roles
                .iter()
                .map(|r| format!("`{}`", r.as_str()))
                .collect();
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
        for (status, resp) in error_responses(&self.errors) {
            responses.insert(status, resp);
        }
        let mut op = json!({
            "operationId": self.id,
            "tags": [self.tag],
            "summary": self.summary,
            "description": description,
            "x-roles": self.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
            "responses": responses,
        });
        if self.roles.is_empty() {
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

fn round_id_param() -> Value {
    path_param(
        "id",
        r("RoundId"),
        "The round's id. An id that is not a positive whole number is `404 unknown_round`.",
    )
}

fn person_id_param() -> Value {
    path_param(
        "person_id",
        r("PersonId"),
        "The resident ID number (a lower-case `x` is accepted). A bad one is `400 invalid_person_id`.",
    )
}

fn area_query(default: &str) -> Value {
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

fn json_body(schema: Value, example: &Value) -> Value {
    let mut v = json!({
        "required": true,
        "description": "`Content-Type: application/json` (or any `+json` type); otherwise `415 unsupported_media_type`.",
        "content": { "application/json": { "example": example } }
    });
    v["content"]["application/json"]["schema"] = schema;
    v
}

fn csv_body(header: &str, example: &str) -> Value {
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
fn table_body(header: &str, example: &str) -> Value {
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

const JSON_BODY_ERRORS: [Code; 3] = [
    Code::MalformedJson,
    Code::UnsupportedMediaType,
    Code::PayloadTooLarge,
];
const WRITE_ERRORS: [Code; 3] = [Code::StorageUnavailable, Code::Overloaded, Code::NotLeader];

// ---------------------------------------------------------------------------
// The operations.
// ---------------------------------------------------------------------------

fn ops_operations() -> Vec<Op> {
    vec![
        Op::new("get", "/healthz", "healthz", "operations", "Liveness")
            .notes("`200` while the process lives.")
            .ok(200, json_response("The process is alive.", r("Health"))),
        Op::new("get", "/readyz", "readyz", "operations", "Readiness")
            .notes(
                "`200` once the store is loaded, else `503` with the same body. Redis being down does \
                 not make it `503` (gates are then answered from the engine); `redis` is `disabled` \
                 when the server runs without Redis (an in-process cache stands in).",
            )
            .ok(200, json_response("Ready.", r("Readiness")))
            .ok(503, json_response("Still loading the store.", r("Readiness"))),
        Op::new("get", "/leader", "leader", "operations", "Is this server the leader?")
            .notes(
                "For a load balancer's health check (Several servers): `200` on the leader, which \
                 takes writes; `503` on a standby or a server still starting. On the embedded \
                 SQLite store the one server is always the leader.",
            )
            .ok(200, json_response("This server is the leader.", r("ClusterState")))
            .ok(503, json_response("Not the leader.", r("ClusterState"))),
        Op::new("get", "/standby", "standby", "operations", "Is this a standby in step?")
            .notes(
                "`200` on a standby no more than 1 second behind the leader (it answers every \
                 read under `/v1`, gate lookups included); `503` otherwise (the leader included).",
            )
            .ok(200, json_response("A standby in step.", r("ClusterState")))
            .ok(503, json_response("Not a standby in step.", r("ClusterState"))),
        Op::new("get", "/metrics", "metrics", "operations", "Prometheus metrics")
            .notes(
                "Prometheus text format, every series prefixed `rollcall_`: requests by route and \
                 status, records and results by outcome, gate lookup latency, cache hits and misses, \
                 round coverage.",
            )
            .ok(
                200,
                json!({
                    "description": "Prometheus text exposition format 0.0.4.",
                    "content": { "text/plain": { "schema": { "type": "string" } } }
                }),
            ),
        Op::new("get", "/openapi.json", "openapi", "operations", "This document")
            .notes("The OpenAPI 3.0 document of the whole contract. Browse it at `/docs/`.")
            .ok(
                200,
                json!({
                    "description": "The OpenAPI document.",
                    "content": { "application/json": { "schema": { "type": "object" } } }
                }),
            ),
        Op::new("get", "/", "dashboard", "operations", "Officials' dashboard")
            .notes("One self-contained HTML page over the public API; it asks for a token itself.")
            .ok(
                200,
                json!({
                    "description": "The dashboard page.",
                    "content": { "text/html": { "schema": { "type": "string" } } }
                }),
            ),
        Op::new("get", "/docs", "docsRedirect", "operations", "Swagger UI (redirect)")
            .notes("Redirects to `/docs/`, so the UI's relative asset paths resolve.")
            .ok(
                308,
                json!({
                    "description": "Permanent redirect to `/docs/`.",
                    "headers": { "Location": { "description": "`/docs/`", "schema": { "type": "string" } } }
                }),
            ),
        Op::new("get", "/docs/{file}", "docsFile", "operations", "Swagger UI")
            .notes(
                "Swagger UI for this document, served from files built into the binary (no CDN). \
                 `/docs/` (an empty `file`) is the UI's `index.html`; an unknown file is \
                 `404 not_found`. The HTML page carries a `Content-Security-Policy` that allows \
                 nothing from other origins.",
            )
            .param(path_param(
                "file",
                json!({ "type": "string" }),
                "A file of the UI, e.g. `index.html`, `swagger-ui.css`; empty for the UI itself.",
            ))
            .ok(
                200,
                json!({
                    "description": "A file of the UI (HTML, JavaScript, CSS or an image).",
                    "content": { "text/html": { "schema": { "type": "string" } } }
                }),
            )
            .errors(&[Code::NotFound]),
    ]
}

fn token_operations() -> Vec<Op> {
    vec![
        Op::new(
            "post",
            "/v1/tokens",
            "createToken",
            "tokens",
            "Issue a token",
        )
        .roles(&[Role::Admin])
        .notes(
            "`site` (1–64 characters) is required for a `scanner`, `area` (a valid area path; it \
                 need not be in the register yet) for an `official`; each is ignored for the other \
                 roles. An unknown role or a missing binding is `400 invalid_field`. The token is \
                 shown only in this answer; the server keeps only a keyed hash. Audited \
                 (`token_create`, `target` naming the token: `token 7 scanner S01`).",
        )
        .body(json_body(
            r("TokenRequest"),
            &json!({"role": "scanner", "name": "S01 phone 2", "site": "S01"}),
        ))
        .ok(
            201,
            json_response("The token, shown only here.", r("TokenCreated")),
        )
        .errors(
            &[
                &JSON_BODY_ERRORS[..],
                &[Code::UnknownField, Code::InvalidField],
                &WRITE_ERRORS[..],
            ]
            .concat(),
        ),
        Op::new(
            "delete",
            "/v1/tokens/{id}",
            "revokeToken",
            "tokens",
            "Revoke a token",
        )
        .roles(&[Role::Admin])
        .notes(
            "The token stops working at once. A token revoked already is `404 unknown_token`, and \
             writes no audit entry. Audited (`token_revoke`, `target` naming the token).",
        )
        .param(path_param(
            "id",
            json!({ "type": "string" }),
            "The token's id, as `POST /v1/tokens` gave it.",
        ))
        .ok(204, json!({ "description": "Revoked." }))
        .errors(&[&[Code::UnknownToken][..], &WRITE_ERRORS[..]].concat()),
        Op::new("get", "/v1/tokens", "listTokens", "tokens", "List tokens")
            .roles(&[Role::Admin])
            .notes(
                "Every token, revoked ones too, in creation order, so an admin can find the one to \
                 revoke. Never shows a token itself (the server keeps only a keyed hash). \
                 `bootstrap` marks the admin token `ROLLCALL_ADMIN_TOKEN` gives (or the one generated \
                 when it was unset): starting the server with another value revokes it and creates \
                 the new one (audited as `token_revoke` and `token_create`); starting with a revoked \
                 value refuses to start.",
            )
            .ok(200, json_response("The tokens.", r("TokenList")))
            .errors(&[]),
    ]
}

fn register_operations() -> Vec<Op> {
    let register_codes = [
        LineCode::InvalidPersonId,
        LineCode::InvalidArea,
        LineCode::InvalidField,
        LineCode::WrongColumnCount,
        LineCode::DuplicatePerson,
        LineCode::MissingColumn,
        LineCode::InvalidUtf8,
    ];
    let heads_codes = [
        LineCode::InvalidArea,
        LineCode::InvalidField,
        LineCode::WrongColumnCount,
        LineCode::DuplicateArea,
        LineCode::MissingColumn,
        LineCode::InvalidUtf8,
    ];
    let list = |cs: &[LineCode]| {
        cs.iter()
            .map(|c| format!("`{}`", c.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let errors = [
        Code::InvalidRegister,
        Code::UnsupportedMediaType,
        Code::PayloadTooLarge,
        Code::StorageUnavailable,
        Code::Overloaded,
    ];
    vec![
        Op::new("post", "/v1/register", "importRegister", "register", "Import the register (CSV or XLSX)")
            .roles(&[Role::Admin])
            .notes(format!(
                "Upsert by `person_id`, all or nothing: one bad line rejects the whole file with \
                 `400 invalid_register` and `lines` (the first {MAX_PROBLEMS} problems; line numbers count \
                 the header as line 1, line 0 is the file as a whole). Line codes: {}. A `person_id` \
                 twice in one file is `duplicate_person` on the second line. Audited \
                 (`register_import`, `rows` = lines imported).",
                list(&register_codes)
            ))
            .body(table_body(
                "person_id,name,phone,area,household",
                "person_id,name,phone,area,household\n61080219850312001X,王芳,13900000000,崇文路街道/学院社区/第03网格/5号楼/3层,5号楼-3层-301\n",
            ))
            .ok(200, json_response("Imported.", r("RegisterAnswer")))
            .errors(&errors),
        Op::new("post", "/v1/heads", "importHeads", "register", "Import the responsible heads (CSV or XLSX)")
            .roles(&[Role::Admin])
            .notes(format!(
                "The responsible head of each area node; one head per node (a later file replaces \
                 it; the same node twice in one file is `duplicate_area`). Same rules and error \
                 shape as the register. Line codes: {}. Audited (`heads_import`).",
                list(&heads_codes)
            ))
            .body(table_body(
                "area,title,name,phone",
                "area,title,name,phone\n崇文路街道/学院社区/第03网格/5号楼/3层,楼层长,王芳,13900000000\n",
            ))
            .ok(200, json_response("Imported.", r("HeadsAnswer")))
            .errors(&errors),
    ]
}

fn resident_operations() -> Vec<Op> {
    vec![
        Op::new("get", "/v1/residents/{person_id}", "getResident", "residents", "Look up a resident")
            .roles(&[Role::Admin, Role::Official])
            .notes(
                "An official only for a resident registered inside its area: anyone else is \
                 `404 unknown_resident` for it, exactly as if not registered (no answer names where \
                 a resident lives), and a registered one outside its area is audited as `denied`. An \
                 unknown or moved-out resident is `404 unknown_resident` for every role. `person_id` \
                 is shown whole. Audited (`resident_view`, `target` the masked ID).",
            )
            .param(person_id_param())
            .ok(200, json_response("The resident.", r("Resident")))
            .errors(&[Code::InvalidPersonId, Code::UnknownResident, Code::StorageUnavailable]),
        Op::new("delete", "/v1/residents/{person_id}", "deleteResident", "residents", "Move a resident out")
            .roles(&[Role::Admin])
            .notes(
                "No longer counted in `residents`, nor in the scope of rounds not yet closed (closed \
                 rounds keep them). Audited (`resident_delete`).",
            )
            .param(person_id_param())
            .ok(204, json!({ "description": "Moved out." }))
            .errors(&[&[Code::InvalidPersonId, Code::UnknownResident][..], &WRITE_ERRORS[..]].concat()),
        Op::new("post", "/v1/residents/{person_id}/clear", "clearResident", "residents", "Clear a `positive`")
            .roles(&[Role::Admin])
            .notes(
                "Clears the red `positive` reason. Works for any valid ID with a status, registered \
                 or not. The body is optional: empty, or a JSON object with an optional `note`. \
                 Answers once the new status is in the gates' cache. Audited (`clear`).",
            )
            .param(person_id_param())
            .body(json!({
                "required": false,
                "description": "Optional. When not empty: `Content-Type: application/json`, else `415 unsupported_media_type`.",
                "content": { "application/json": { "schema": r("ClearRequest"), "example": {"note": "retest negative at the fever clinic"} } }
            }))
            .ok(200, json_response("The new status, as a gate sees it.", r("Status")))
            .errors(
                &[
                    &[Code::InvalidPersonId][..],
                    &JSON_BODY_ERRORS[..],
                    &[Code::UnknownField, Code::InvalidField],
                    &WRITE_ERRORS[..],
                ]
                .concat(),
            ),
    ]
}

fn batch_operations() -> Vec<Op> {
    let batch_errors = [
        &JSON_BODY_ERRORS[..],
        &[
            Code::UnknownField,
            Code::InvalidField,
            Code::EmptyBatch,
            Code::BatchTooLarge,
        ],
        &WRITE_ERRORS[..],
    ]
    .concat();
    let batch_rules = format!(
        "The body is an object holding exactly the array: another top-level key is \
         `400 unknown_field`, a missing or non-array one `400 invalid_field`; 1 to {MAX_BATCH} items \
         (0: `400 empty_batch`, more: `413 batch_too_large`). Each item is judged alone, in batch \
         order, so one bad item never blocks the rest: refused items are listed in `rejected` \
         (sorted by `index`) and `accepted + duplicates + len(rejected)` is the batch size. The \
         answer is sent only once the accepted items are durable."
    );
    vec![
        Op::new("post", "/v1/records", "postRecords", "records", "Upload sample-collection records")
            .roles(&[Role::Scanner, Role::Admin])
            .notes(format!(
                "{batch_rules}\n\nA scanner's site comes from its token, and its records must not carry \
                 `site` (`unknown_field`); an admin's must (`invalid_field` without it). Checks run in \
                 this order: fields, `person_id`, `tube_id`, `collected_at`, duplicate, site, pool \
                 size. The key of a record is `(tube_id, person_id)`: sending it again (later or in \
                 the same batch) is a duplicate, counted and without effect, never an error. People \
                 not in the register are accepted and also counted in `unregistered`. Per-item codes: \
                 {}.",
                codes_list(&RECORD_ITEM_CODES)
            ))
            .body(json_body(
                r("RecordsRequest"),
                &json!({"records": [{"person_id": "61080219850312001X", "tube_id": "T2204190001", "collected_at": "2022-04-19T08:15:00+08:00"}]}),
            ))
            .ok(200, json_response("How each record was judged.", r("RecordsAnswer")))
            .errors(&batch_errors),
        Op::new("post", "/v1/results", "postResults", "results", "Upload lab results")
            .roles(&[Role::Lab, Role::Admin])
            .notes(format!(
                "{batch_rules}\n\n`reported_at` follows the rules of `collected_at`. The same result \
                 again is a duplicate; a different result for the same tube is `conflicting_result`. \
                 A result for a tube with no records yet is kept and applied when they arrive \
                 (counted in `unmatched`, inside `accepted`). Per-item codes: {}.",
                codes_list(&RESULT_ITEM_CODES)
            ))
            .body(json_body(
                r("ResultsRequest"),
                &json!({"results": [{"tube_id": "T2204190001", "result": "negative", "reported_at": "2022-04-19T20:00:00+08:00"}]}),
            ))
            .ok(200, json_response("How each result was judged.", r("ResultsAnswer")))
            .errors(&batch_errors),
    ]
}

fn codes_list(codes: &[ItemCode]) -> String {
    codes
        .iter()
        .map(|c| format!("`{}` ({})", c.as_str(), item_code_meaning(*c)))
        .collect::<Vec<_>>()
        .join("; ")
}

fn round_operations() -> Vec<Op> {
    let official_inside = "An official only for a round whose whole scope lies inside its area \
                           (`403 out_of_scope`; an unknown round is `404 unknown_round` first).";
    vec![
        Op::new("post", "/v1/rounds", "createRound", "rounds", "Create a round")
            .roles(&[Role::Admin, Role::Official])
            .notes(
                "`deadline` must be after `opens_at` (`400 invalid_window`). A scope entry that is not a \
                 valid area path, or not in the register, is `400 unknown_area`; a non-string entry or \
                 an empty `scope` is `400 invalid_field`; for an official every path must lie inside \
                 its area (`403 out_of_scope`). `name` is 1–200 characters. \
                 A round closes by itself at its deadline. Audited (`round_create`).",
            )
            .body(json_body(
                r("RoundRequest"),
                &json!({"name": "第3轮全员核酸", "scope": ["崇文路街道/学院社区"], "opens_at": "2022-04-19T06:00:00+08:00", "deadline": "2022-04-19T22:00:00+08:00"}),
            ))
            .ok(201, json_response("The new round.", r("Round")))
            .errors(
                &[
                    &JSON_BODY_ERRORS[..],
                    &[
                        Code::UnknownField,
                        Code::InvalidField,
                        Code::InvalidTime,
                        Code::InvalidWindow,
                        Code::UnknownArea,
                        Code::OutOfScope,
                    ],
                    &WRITE_ERRORS[..],
                ]
                .concat(),
            ),
        Op::new("get", "/v1/rounds", "listRounds", "rounds", "List rounds")
            .roles(&[Role::Admin, Role::Official])
            .notes(
                "Sorted by `opens_at`, then id. An admin sees every round with its whole counts; an \
                 official the rounds whose scope overlaps its area (lies inside it, or holds it), \
                 every count taken over the part of the round inside its area (the numbers of \
                 `coverage` of its area at `depth=0`).",
            )
            .ok(200, json_response("The rounds.", r("RoundList")))
            .errors(&[]),
        Op::new("get", "/v1/rounds/{id}", "getRound", "rounds", "Read a round")
            .roles(&[Role::Admin, Role::Official])
            .notes(
                "An official only for a round whose scope overlaps its area (`403 out_of_scope`, \
                 audited as `denied`; an unknown round is `404 unknown_round` first), with every \
                 count taken over the part of the round inside its area (the numbers of `coverage` \
                 of its area at `depth=0`).",
            )
            .param(round_id_param())
            .ok(200, json_response("The round with its counts.", r("Round")))
            .errors(&[Code::UnknownRound, Code::OutOfScope]),
        Op::new("post", "/v1/rounds/{id}/close", "closeRound", "rounds", "Close a round now")
            .roles(&[Role::Admin, Role::Official])
            .notes(format!(
                "{official_inside} Idempotent: `flipped` (how many people this close flagged) is 0 \
                 the second time. Closing before the deadline moves the deadline to the moment of \
                 the close. Answers once the flips are in the gates' cache. Any request body is \
                 ignored. Audited (`round_close`, `rows` = `flipped`)."
            ))
            .param(round_id_param())
            .ok(200, json_response("The closed round and how many people it flagged.", r("CloseAnswer")))
            .errors(&[&[Code::UnknownRound, Code::OutOfScope][..], &WRITE_ERRORS[..]].concat()),
    ]
}

fn view_operations() -> Vec<Op> {
    let view_errors = [
        Code::InvalidQuery,
        Code::UnknownArea,
        Code::OutOfScope,
        Code::UnknownRound,
    ];
    let xlsx = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
    vec![
        Op::new("get", "/v1/rounds/{id}/missing", "missingList", "rounds", "Who is still missing")
            .roles(&[Role::Admin, Role::Official])
            .notes(
                "People of the round in `missing` under `area`, sorted by area, household, name (by \
                 code point). `person_id` is masked to its first 6 and last 4 characters in every \
                 format unless an admin asks `unmask=true` (anyone else: `403 forbidden`). \
                 `group_by=head` (JSON or text; with `format=csv|xlsx` it is `400 invalid_query`) returns \
                 one group per head, in the order of the head's area path, people without a head last \
                 with `\"head\": null`. `format=text` (`group_by=head` implied) gives the same groups \
                 as door-knock messages in plain Chinese (`text/plain; charset=utf-8`), one per head, \
                 separated by one blank line: the round, the head's title and name, their area, then \
                 each household with the names still missing — never an ID or phone number. CSV columns: \
                 `person_id,name,phone,area,household,head_title,head_name,head_phone` (three empty \
                 fields without a head), streamed. XLSX: a summary sheet with a row per grid \
                 (`grid,in_scope,sampled,made_up,exempt,missing`), then one sheet per grid with the \
                 CSV's columns; sheet names are valid in Excel for any area name (at most 31 \
                 characters, unique, none of `[]:*?/\\`, no leading or trailing apostrophe, never \
                 `History`). In CSV a cell beginning with `=`, `+`, `-`, `@`, a tab or a carriage \
                 return gets a leading `'`. JSON and CSV are streamed. A heavy read: past the read \
                 budget it is `503 overloaded` with `Retry-After`. Any other query parameter, or one \
                 given twice, is `400 invalid_query`. Every answered call is audited \
                 (`missing_list`; also `unmask` when unmasked).",
            )
            .param(round_id_param())
            .param(area_query(
                "an official's own area; for an admin the whole round, answered as `\"area\": null`.",
            ))
            .param(query_param(
                "format",
                json!({ "type": "string", "enum": ["json", "csv", "xlsx", "text"], "default": "json" }),
                "The answer's format (`text`: messages per head).",
            ))
            .param(query_param(
                "unmask",
                json!({ "type": "boolean", "default": false }),
                "`true` shows whole ID numbers (admin only). Exactly `true` or `false`; anything else \
                 is `400 invalid_query`.",
            ))
            .param(query_param(
                "group_by",
                json!({ "type": "string", "enum": ["head"] }),
                "`head`: group the list by responsible head (JSON, or messages with `format=text`).",
            ))
            .ok(
                200,
                json!({
                    "description": "The missing list (JSON flat, JSON grouped by head, CSV, XLSX, or text messages per head).",
                    "headers": {
                        "Content-Disposition": {
                            "description": "XLSX only: `attachment; filename=\"missing-round-{id}.xlsx\"`.",
                            "schema": { "type": "string" }
                        }
                    },
                    "content": {
                        "application/json": { "schema": { "oneOf": [r("MissingList"), r("MissingGroups")] } },
                        "text/csv": { "schema": { "type": "string", "description": "CSV with header `person_id,name,phone,area,household,head_title,head_name,head_phone`." } },
                        xlsx: { "schema": { "type": "string", "format": "binary" } },
                        "text/plain": { "schema": { "type": "string", "description": "One message per head, separated by a blank line." } }
                    }
                }),
            )
            .errors(&[&view_errors[..], &[Code::StorageUnavailable, Code::Overloaded]].concat()),
        Op::new("get", "/v1/repeat-missing", "repeatMissing", "rounds", "Who misses round after round")
            .roles(&[Role::Admin, Role::Official])
            .notes(
                "Residents under `area` still flagged in at least `min` of the last `last` closed \
                 rounds whose scope covered them (rounds ordered by deadline, then id; moved-out \
                 residents too while a round still flags them): the people a campaign must chase \
                 first. Sorted by `misses` (most first), then area, household, name. Each person as in \
                 missing lists, plus `misses` and `round_ids` (in round order). `person_id` is masked \
                 unless an admin asks `unmask=true` (anyone else: `403 forbidden`). CSV and XLSX: the \
                 missing list's columns, then `misses` and `round_ids` (space-separated). Any other \
                 query parameter, or one given twice, is `400 invalid_query`. Every call is audited \
                 (`missing_list`; also `unmask` when unmasked).",
            )
            .param(area_query(
                "an official's own area; for an admin the whole city, answered as `\"area\": null`.",
            ))
            .param(query_param(
                "last",
                json!({ "type": "integer", "minimum": 1, "maximum": crate::http::routes::repeat_missing::MAX_LAST, "default": crate::http::routes::repeat_missing::DEFAULT_LAST }),
                "How many of each person's last closed rounds to look at; otherwise `400 invalid_query`.",
            ))
            .param(query_param(
                "min",
                json!({ "type": "integer", "minimum": 1, "maximum": crate::http::routes::repeat_missing::MAX_LAST, "default": crate::http::routes::repeat_missing::DEFAULT_MIN }),
                "The fewest of those rounds that must still flag them (more than `last`: nobody).",
            ))
            .param(query_param(
                "format",
                json!({ "type": "string", "enum": ["json", "csv", "xlsx"], "default": "json" }),
                "The answer's format.",
            ))
            .param(query_param(
                "unmask",
                json!({ "type": "boolean", "default": false }),
                "`true` shows whole ID numbers (admin only).",
            ))
            .ok(
                200,
                json!({
                    "description": "The repeat missers.",
                    "content": {
                        "application/json": { "schema": r("RepeatMissing") },
                        "text/csv": { "schema": { "type": "string", "description": "CSV with header `person_id,name,phone,area,household,head_title,head_name,head_phone,misses,round_ids`." } },
                        xlsx: { "schema": { "type": "string", "format": "binary" } }
                    }
                }),
            )
            .errors(&[Code::InvalidQuery, Code::UnknownArea, Code::OutOfScope, Code::Forbidden, Code::StorageUnavailable, Code::Overloaded]),
        Op::new("get", "/v1/rounds/{id}/coverage", "coverage", "rounds", "Coverage by area")
            .roles(&[Role::Admin, Role::Official])
            .notes(
                "The counts of `area` and of its child nodes `depth` levels down; children are the \
                 child nodes with at least one resident in scope, sorted by area; every node carries \
                 `children` (`[]` at the bottom and for `depth=0`). A heavy read: past the read \
                 budget it is `503 overloaded` with `Retry-After`. Any other query parameter, or one \
                 given twice, is `400 invalid_query`. Not audited.",
            )
            .param(round_id_param())
            .param(area_query(
                "an official's own area; for an admin the lowest area node holding the round's whole \
                 scope (its common prefix).",
            ))
            .param(query_param(
                "depth",
                json!({ "type": "integer", "minimum": 0, "maximum": COVERAGE_MAX_DEPTH, "default": 1 }),
                &format!(
                    "How many levels of children, a whole number from 0 to {COVERAGE_MAX_DEPTH}; \
                     otherwise `400 invalid_query`."
                ),
            ))
            .ok(200, json_response("The coverage tree.", r("Coverage")))
            .errors(&[&view_errors[..], &[Code::Overloaded]].concat()),
        Op::new("get", "/v1/rounds/{id}/progress", "progress", "rounds", "Samples by hour")
            .roles(&[Role::Admin, Role::Official])
            .notes(
                "In-scope people under `area` by the hour (Asia/Shanghai) of their first sample inside \
                 the window, every hour from the window's first to its last (or the current one, while \
                 the window is running), in order, empty hours as 0. Any other query parameter, or one \
                 given twice, is `400 invalid_query`. An archived round (Retention) keeps no \
                 per-person sample hours: `410 round_archived`. Not audited.",
            )
            .param(round_id_param())
            .param(area_query(
                "an official's own area; for an admin the whole round, answered as `\"area\": null`.",
            ))
            .ok(200, json_response("Hourly buckets.", r("Progress")))
            .errors(&[&view_errors[..], &[Code::RoundArchived]].concat()),
    ]
}

fn other_operations() -> Vec<Op> {
    let person_scope = "An official only for a person registered inside its area: anyone else \
                        is answered exactly as if not registered (`404 unknown_resident` for a grant, \
                        `404 unknown_exemption` for a delete; no answer names where a resident lives), \
                        and a registered one outside its area is audited as `denied`. An admin may \
                        exempt any valid ID.";
    vec![
        Op::new("post", "/v1/exemptions", "createExemption", "exemptions", "Grant an exemption")
            .roles(&[Role::Admin, Role::Official])
            .notes(format!(
                "{person_scope} `until` before `from` is `400 invalid_window`. An exemption covers a \
                 round when `from ≤ deadline ≤ until`; while in force it also suppresses \
                 `no_recent_sample`. Answers once the status change is in the gates' cache. Audited \
                 (`exemption_create`, `target` the exemption's id)."
            ))
            .body(json_body(
                r("ExemptionRequest"),
                &json!({"person_id": "61080219850312001X", "reason": "bedridden", "from": "2022-04-01T00:00:00+08:00", "until": "2022-05-01T00:00:00+08:00", "note": "卧床"}),
            ))
            .ok(201, json_response("The exemption.", r("Exemption")))
            .errors(
                &[
                    &JSON_BODY_ERRORS[..],
                    &[
                        Code::UnknownField,
                        Code::InvalidField,
                        Code::InvalidPersonId,
                        Code::InvalidTime,
                        Code::InvalidWindow,
                        Code::UnknownResident,
                    ],
                    &WRITE_ERRORS[..],
                ]
                .concat(),
            ),
        Op::new("post", "/v1/exemptions/import", "importExemptions", "exemptions", "Import a list of exemptions (CSV or XLSX)")
            .roles(&[Role::Admin, Role::Official])
            .notes(format!(
                "A community's list of bedridden, away or hospitalised residents. All or nothing, \
                 like the register: one bad line rejects the whole file with `400 invalid_exemptions` \
                 and `lines` (the first {MAX_PROBLEMS} problems). Line codes: `invalid_person_id`, \
                 `invalid_field` (an unknown `reason`, a note over 1000 characters), `invalid_time` \
                 (not RFC 3339 with an offset), `invalid_window` (`until` before `from`), \
                 `wrong_column_count`, `unknown_resident` (not a registered resident — for an \
                 official, not one registered inside its area, exactly as if unregistered); for the \
                 file: `missing_column`, `invalid_utf8`. Residents are judged once every line \
                 parses. All exemptions are written in one transaction; answers once the status \
                 changes are in the gates' cache. Audited as one `exemption_create` with `rows`."
            ))
            .body(table_body(
                "person_id,reason,from,until,note",
                "person_id,reason,from,until,note\n61080219850312001X,bedridden,2022-04-01T00:00:00+08:00,2022-05-01T00:00:00+08:00,卧床\n",
            ))
            .ok(201, json_response("Granted, ids in file order.", r("ExemptionImportAnswer")))
            .errors(&[
                Code::InvalidExemptions,
                Code::UnsupportedMediaType,
                Code::PayloadTooLarge,
                Code::StorageUnavailable,
                Code::Overloaded,
            ]),
        Op::new("get", "/v1/exemptions", "listExemptions", "exemptions", "List the exemptions in force")
            .roles(&[Role::Admin, Role::Official])
            .notes(
                "Exemptions in force (not deleted, `until` not past) of residents registered under \
                 `area`, in list order (area, household, name), then by id. Without `area`: an \
                 official's own area; for an admin every exemption in force (a person not \
                 registered has `name` and `area` null, listed last). `person_id` masked as in \
                 missing lists. Audited as `missing_list`.",
            )
            .param(area_query("the token's area for an official; every exemption for an admin."))
            .ok(200, json_response("The exemptions.", r("ExemptionList")))
            .errors(&[Code::InvalidQuery, Code::UnknownArea, Code::OutOfScope, Code::StorageUnavailable]),
        Op::new("delete", "/v1/exemptions/{id}", "deleteExemption", "exemptions", "Delete an exemption")
            .roles(&[Role::Admin, Role::Official])
            .notes(format!(
                "{person_scope} A round's flag returns if the deleted exemption was what cleared it. \
                 Audited (`exemption_delete`, `target` the exemption's id)."
            ))
            .param(path_param(
                "id",
                json!({ "type": "string" }),
                "The exemption's id. An unknown (or non-numeric) id is `404 unknown_exemption`.",
            ))
            .ok(204, json!({ "description": "Deleted." }))
            .errors(&[&[Code::UnknownExemption][..], &WRITE_ERRORS[..]].concat()),
        Op::new("get", "/v1/status/{person_id}", "gateStatus", "status", "A person's gate status")
            .roles(&[Role::Gate, Role::Admin])
            .notes(
                "Served from the status cache (Redis, or in-process without it); a change is visible \
                 within one second of the response to the write or close that caused it. Holds no \
                 name, address or phone. An unknown but valid ID with no records is `green` unless the \
                 sample-age policy makes it `yellow`. Gate lookups are the last requests shed under \
                 overload.",
            )
            .param(person_id_param())
            .ok(200, json_response("The status.", r("Status")))
            .errors(&[Code::InvalidPersonId]),
        Op::new("get", "/v1/audit", "auditLog", "audit", "Read the audit log")
            .roles(&[Role::Admin])
            .notes(
                "Entries at or after `since` (all without it), oldest first. Any other query \
                 parameter, or one given twice, is `400 invalid_query`.",
            )
            .param(query_param(
                "since",
                json!({ "type": "string", "format": "date-time" }),
                "RFC 3339 with an explicit offset (URL-encode the `+`); otherwise `400 invalid_query`.",
            ))
            .ok(200, json_response("The entries.", r("AuditList")))
            .errors(&[Code::InvalidQuery, Code::StorageUnavailable]),
    ]
}

/// Every operation of the contract.
fn operations() -> Vec<Op> {
    [
        ops_operations(),
        token_operations(),
        register_operations(),
        resident_operations(),
        batch_operations(),
        round_operations(),
        view_operations(),
        other_operations(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

// ---------------------------------------------------------------------------
// Schemas.
// ---------------------------------------------------------------------------

/// A string holding something other than whitespace (names: the server
/// refuses a blank one).
const NOT_BLANK: &str = "\\S";

/// The rules of [`crate::domain::AreaPath::parse`] a pattern can state: at
/// most 16 non-empty segments without control characters (Unicode `Cc`),
/// none starting or ending with whitespace (Unicode `White_Space`). The byte
/// limit is `maxLength`'s approximation; the server counts UTF-8 bytes.
fn area_path_pattern() -> String {
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

/// `POST /v1/tokens`'s body for these roles, with these fields required.
fn token_request(roles: &[Role], required: &[&str]) -> Value {
    closed_object(
        "",
        required,
        vec![
            ("role", enum_of(roles.iter().map(|r| r.as_str()))),
            (
                "name",
                json!({ "type": "string", "minLength": 1, "pattern": NOT_BLANK, "description": "Who holds it (shown in the audit log)." }),
            ),
            (
                "site",
                json!({ "type": "string", "minLength": 1, "maxLength": 64, "pattern": NOT_BLANK, "description": "Required for `scanner`; checked but not kept otherwise." }),
            ),
            (
                "area",
                json!({ "allOf": [r("AreaPath")], "description": "Required for `official`; checked but not kept otherwise." }),
            ),
        ],
    )
}

fn value_schemas() -> Vec<(&'static str, Value)> {
    vec![
        (
            "PersonId",
            json!({
                "type": "string",
                "minLength": 18,
                "maxLength": 18,
                "pattern": "^[0-9]{17}[0-9Xx]$",
                "description": "An 18-character resident ID number (GB 11643-1999): 6-digit region, 8-digit \
                                birth date, 3-digit sequence, ISO 7064 MOD 11-2 check character (`X` for 10; \
                                `x` is accepted and normalised). Bad length, characters or check character, \
                                or an impossible or future birth date: `invalid_person_id`.",
                "example": "61080219850312001X"
            }),
        ),
        (
            "MaskedPersonId",
            json!({
                "type": "string",
                "minLength": 18,
                "maxLength": 18,
                "pattern": "^[0-9]{6}([*]{8}|[0-9]{8})[0-9]{3}[0-9X]$",
                "description": "An ID number masked to its first 6 and last 4 characters, or whole when an \
                                admin asked `unmask=true`.",
                "example": "610802********001X"
            }),
        ),
        (
            "AreaPath",
            json!({
                "type": "string",
                "minLength": 1,
                "maxLength": area_path::MAX_BYTES,
                "pattern": area_path_pattern(),
                "description": format!(
                    "`/`-separated segments from the top of the hierarchy down; at most {} segments and \
                     {} bytes (UTF-8); no empty segment (leading, trailing or doubled `/`), no segment \
                     starting or ending with whitespace, no control characters. A scope is a prefix of \
                     whole segments.",
                    area_path::MAX_SEGMENTS,
                    area_path::MAX_BYTES
                ),
                "example": "崇文路街道/学院社区/第03网格/5号楼/3层"
            }),
        ),
        (
            "TubeId",
            json!({
                "type": "string",
                "minLength": 1,
                "maxLength": tube_id::MAX_LEN,
                "pattern": format!("^[A-Za-z0-9-]{{1,{}}}$", tube_id::MAX_LEN),
                "description": "Unique city-wide.",
                "example": "T2204190001"
            }),
        ),
        (
            "RoundId",
            json!({ "type": "string", "pattern": "^[1-9][0-9]*$", "description": "A round's id (assigned by the server).", "example": "3" }),
        ),
        ("Role", enum_of(Role::ALL.iter().map(|r| r.as_str()))),
        ("Colour", enum_of(Colour::ALL.iter().map(|c| c.as_str()))),
        (
            "ReasonCode",
            enum_of(ReasonCode::ALL.iter().map(|c| c.as_str())),
        ),
        (
            "TestResult",
            enum_of(TestResult::ALL.iter().map(|c| c.as_str())),
        ),
        (
            "ExemptionReason",
            enum_of(ExemptionReason::ALL.iter().map(|c| c.as_str())),
        ),
        ("ErrorCode", {
            let mut v = enum_of(Code::ALL.iter().map(|c| c.as_str()));
            v["description"] =
                json!("Every error code; see the table in the document's description.");
            v
        }),
    ]
}

fn error_schemas() -> Vec<(&'static str, Value)> {
    vec![
        (
            "Error",
            object(
                "Every error: `{\"error\": {\"code\", \"message\"}}`. `code` never changes once released; \
                 `message` is for humans and may change.",
                &["error"],
                vec![(
                    "error",
                    object(
                        "",
                        &["code", "message"],
                        vec![
                            ("code", r("ErrorCode")),
                            ("message", string("For humans; may change.")),
                            (
                                "request_id",
                                json!({ "type": "string", "description": "On 5xx only: names the failure in the server's log." }),
                            ),
                        ],
                    ),
                )],
            ),
        ),
        (
            "LineProblem",
            object(
                "One problem of a rejected file (CSV or spreadsheet: register, heads, exemptions).",
                &["line", "code", "message"],
                vec![
                    (
                        "line",
                        count(
                            "The line (the header is 1), or a spreadsheet's row number; 0 when not tied to a line.",
                        ),
                    ),
                    (
                        "sheet",
                        string("A spreadsheet's sheet name; absent for CSV."),
                    ),
                    ("code", enum_of(LineCode::ALL.iter().map(|c| c.as_str()))),
                    ("message", string("For humans.")),
                ],
            ),
        ),
        (
            "RegisterError",
            json!({
                "description": "`400 invalid_register`: the error plus the file's problems.",
                "allOf": [
                    r("Error"),
                    object("", &["lines"], vec![(
                        "lines",
                        json!({ "type": "array", "maxItems": MAX_PROBLEMS, "items": r("LineProblem"), "description": "The first 100 problems." }),
                    )]),
                ]
            }),
        ),
        (
            "Rejected",
            object(
                "One refused item of a batch.",
                &["index", "code", "message"],
                vec![
                    ("index", count("The item's 0-based position in the batch.")),
                    ("code", {
                        let mut v = enum_of(ItemCode::ALL.iter().map(|c| c.as_str()));
                        v["description"] = json!(
                            ItemCode::ALL
                                .iter()
                                .map(|c| format!("`{}`: {}.", c.as_str(), item_code_meaning(*c)))
                                .collect::<Vec<_>>()
                                .join(" ")
                        );
                        v
                    }),
                    ("message", string("For humans.")),
                ],
            ),
        ),
    ]
}

fn batch_schemas() -> Vec<(&'static str, Value)> {
    let rejected = json!({ "type": "array", "items": r("Rejected") });
    vec![
        (
            "Record",
            closed_object(
                "One sample-collection record. The site is a scanner token's own: a scanner's record \
                 must not carry `site`; an admin's must.",
                &["person_id", "tube_id", "collected_at"],
                vec![
                    ("person_id", r("PersonId")),
                    ("tube_id", r("TubeId")),
                    (
                        "collected_at",
                        time(
                            "RFC 3339 with an offset; at most 5 minutes in the future, at most 30 days old.",
                            false,
                        ),
                    ),
                    (
                        "site",
                        json!({ "type": "string", "minLength": 1, "maxLength": 64, "description": "Admin tokens only (required for them)." }),
                    ),
                ],
            ),
        ),
        (
            "RecordsRequest",
            closed_object(
                "",
                &["records"],
                vec![(
                    "records",
                    json!({ "type": "array", "minItems": 1, "maxItems": MAX_BATCH, "items": r("Record") }),
                )],
            ),
        ),
        (
            "LabResult",
            closed_object(
                "One tube's result.",
                &["tube_id", "result", "reported_at"],
                vec![
                    ("tube_id", r("TubeId")),
                    ("result", r("TestResult")),
                    (
                        "reported_at",
                        time("Follows the rules of `collected_at`.", false),
                    ),
                ],
            ),
        ),
        (
            "ResultsRequest",
            closed_object(
                "",
                &["results"],
                vec![(
                    "results",
                    json!({ "type": "array", "minItems": 1, "maxItems": MAX_BATCH, "items": r("LabResult") }),
                )],
            ),
        ),
        (
            "RecordsAnswer",
            object(
                "`accepted + duplicates + len(rejected)` is the batch size.",
                &["accepted", "duplicates", "unregistered", "rejected"],
                vec![
                    ("accepted", count("New records, now durable.")),
                    (
                        "duplicates",
                        count("Records whose `(tube_id, person_id)` was already received."),
                    ),
                    (
                        "unregistered",
                        count("Accepted records of people not in the register."),
                    ),
                    ("rejected", rejected.clone()),
                ],
            ),
        ),
        (
            "ResultsAnswer",
            object(
                "`accepted + duplicates + len(rejected)` is the batch size.",
                &["accepted", "duplicates", "unmatched", "rejected"],
                vec![
                    ("accepted", count("New results, now durable.")),
                    (
                        "duplicates",
                        count("The same result for the same tube again."),
                    ),
                    (
                        "unmatched",
                        count(
                            "Accepted results for tubes with no records yet (kept until they arrive).",
                        ),
                    ),
                    ("rejected", rejected),
                ],
            ),
        ),
    ]
}

fn account_schemas() -> Vec<(&'static str, Value)> {
    vec![
        (
            "TokenRequest",
            json!({
                "description": "One of three shapes by `role`: a `scanner` needs `site`, an `official` \
                                needs `area`; a binding the role does not use is checked but not kept.",
                "oneOf": [
                    token_request(&[Role::Scanner], &["role", "name", "site"]),
                    token_request(&[Role::Official], &["role", "name", "area"]),
                    token_request(
                        &[Role::Admin, Role::Lab, Role::Gate],
                        &["role", "name"],
                    ),
                ]
            }),
        ),
        (
            "TokenInfo",
            object(
                "A token as listed: never the token itself.",
                &[
                    "id",
                    "role",
                    "name",
                    "site",
                    "area",
                    "created_at",
                    "revoked_at",
                    "bootstrap",
                ],
                vec![
                    ("id", string("For `DELETE /v1/tokens/{id}`.")),
                    ("role", r("Role")),
                    ("name", string("")),
                    (
                        "site",
                        json!({ "type": "string", "nullable": true, "description": "A scanner's site; null for other roles." }),
                    ),
                    (
                        "area",
                        json!({ "allOf": [r("AreaPath")], "nullable": true, "description": "An official's area; null for other roles." }),
                    ),
                    ("created_at", time("", false)),
                    ("revoked_at", time("Null while the token works.", true)),
                    (
                        "bootstrap",
                        json!({ "type": "boolean", "description": "The bootstrap admin (`ROLLCALL_ADMIN_TOKEN`)." }),
                    ),
                ],
            ),
        ),
        (
            "TokenList",
            object(
                "In creation order.",
                &["tokens"],
                vec![(
                    "tokens",
                    json!({ "type": "array", "items": r("TokenInfo") }),
                )],
            ),
        ),
        (
            "TokenCreated",
            object(
                "",
                &["id", "token"],
                vec![
                    ("id", string("For `DELETE /v1/tokens/{id}`.")),
                    ("token", string("The bearer token; shown only here.")),
                ],
            ),
        ),
        (
            "RegisterAnswer",
            object(
                "",
                &["residents", "inserted", "updated", "unchanged"],
                vec![
                    (
                        "residents",
                        count("Registered residents now (moved-out ones not counted)."),
                    ),
                    ("inserted", count("")),
                    ("updated", count("")),
                    ("unchanged", count("")),
                ],
            ),
        ),
        (
            "HeadsAnswer",
            object(
                "",
                &["heads", "inserted", "updated", "unchanged"],
                vec![
                    ("heads", count("Heads now.")),
                    ("inserted", count("")),
                    ("updated", count("")),
                    ("unchanged", count("")),
                ],
            ),
        ),
        (
            "Reason",
            object(
                "`positive` and `repeated_misses` are red; `pool_positive`, `missed_round` and \
                 `no_recent_sample` yellow.",
                &["code"],
                vec![
                    ("code", r("ReasonCode")),
                    (
                        "round_id",
                        json!({ "allOf": [r("RoundId")], "description": "For `missed_round`: the round." }),
                    ),
                ],
            ),
        ),
        (
            "Status",
            object(
                "What a venue gate sees: red if any red reason, else yellow if any reason, else green.",
                &[
                    "color",
                    "reasons",
                    "valid_until",
                    "last_sample_at",
                    "last_negative_at",
                ],
                vec![
                    ("color", r("Colour")),
                    ("reasons", json!({ "type": "array", "items": r("Reason") })),
                    (
                        "valid_until",
                        time(
                            "When the answer changes by itself with no new data (only the sample-age policy causes that); else null.",
                            true,
                        ),
                    ),
                    ("last_sample_at", time("The latest `collected_at`.", true)),
                    (
                        "last_negative_at",
                        time(
                            "The `collected_at` of the latest sample whose result is negative.",
                            true,
                        ),
                    ),
                ],
            ),
        ),
        (
            "Resident",
            object(
                "",
                &[
                    "person_id",
                    "name",
                    "phone",
                    "area",
                    "household",
                    "status",
                    "last_sample_at",
                    "flagged_rounds",
                ],
                vec![
                    ("person_id", r("PersonId")),
                    ("name", string("")),
                    ("phone", string("")),
                    ("area", r("AreaPath")),
                    ("household", string("")),
                    ("status", r("Status")),
                    ("last_sample_at", time("The latest `collected_at`.", true)),
                    (
                        "flagged_rounds",
                        json!({ "type": "array", "items": r("RoundId"), "description": "The closed rounds they are still flagged in." }),
                    ),
                ],
            ),
        ),
        (
            "ClearRequest",
            closed_object(
                "",
                &[],
                vec![(
                    "note",
                    json!({ "type": "string", "maxLength": 1000, "description": "Why (kept with the clear)." }),
                )],
            ),
        ),
        (
            "ExemptionRequest",
            closed_object(
                "",
                &["person_id", "reason", "from", "until"],
                vec![
                    ("person_id", r("PersonId")),
                    ("reason", r("ExemptionReason")),
                    ("from", time("", false)),
                    ("until", time("Not before `from`.", false)),
                    ("note", json!({ "type": "string", "maxLength": 1000 })),
                ],
            ),
        ),
        (
            "Exemption",
            object(
                "",
                &["id", "person_id", "reason", "from", "until", "note"],
                vec![
                    ("id", string("For `DELETE /v1/exemptions/{id}`.")),
                    ("person_id", r("PersonId")),
                    ("reason", r("ExemptionReason")),
                    ("from", time("", false)),
                    ("until", time("", false)),
                    ("note", string("Empty when none was given.")),
                ],
            ),
        ),
        (
            "ExemptionImportAnswer",
            object(
                "",
                &["created", "ids"],
                vec![
                    ("created", count("Exemptions granted.")),
                    (
                        "ids",
                        json!({ "type": "array", "items": { "type": "string" }, "description": "Their ids, in file order." }),
                    ),
                ],
            ),
        ),
        (
            "ListedExemption",
            object(
                "",
                &[
                    "id",
                    "person_id",
                    "name",
                    "area",
                    "reason",
                    "from",
                    "until",
                    "note",
                ],
                vec![
                    ("id", string("For `DELETE /v1/exemptions/{id}`.")),
                    (
                        "person_id",
                        string("Masked: the first 6 and last 4 characters."),
                    ),
                    ("name", json!({ "type": "string", "nullable": true })),
                    ("area", json!({ "type": "string", "nullable": true })),
                    ("reason", r("ExemptionReason")),
                    ("from", time("", false)),
                    ("until", time("", false)),
                    ("note", string("Empty when none was given.")),
                ],
            ),
        ),
        (
            "ExemptionList",
            object(
                "",
                &["exemptions"],
                vec![(
                    "exemptions",
                    json!({ "type": "array", "items": r("ListedExemption") }),
                )],
            ),
        ),
        (
            "AuditEntry",
            object(
                "",
                &[
                    "at",
                    "token_name",
                    "role",
                    "action",
                    "area",
                    "round_id",
                    "rows",
                    "target",
                ],
                vec![
                    ("at", time("", false)),
                    ("token_name", string("The `name` of the token that acted.")),
                    ("role", r("Role")),
                    ("action", enum_of(AuditAction::ALL.map(AuditAction::as_str))),
                    ("area", json!({ "type": "string", "nullable": true })),
                    ("round_id", json!({ "type": "string", "nullable": true })),
                    (
                        "rows",
                        json!({ "type": "integer", "format": "int64", "minimum": 0, "nullable": true, "description": "How many people the action returned or changed; null where none." }),
                    ),
                    (
                        "target",
                        json!({ "type": "string", "nullable": true, "description": "What the action was about, where it is one thing: a token's id, role and binding (`token 7 scanner S01`) for `token_create`/`token_revoke`; the resident's masked ID for `resident_view`, `clear`, `resident_delete` and `denied`; the exemption's id for `exemption_create`/`exemption_delete`; null otherwise." }),
                    ),
                ],
            ),
        ),
        (
            "AuditList",
            object(
                "Oldest first.",
                &["entries"],
                vec![(
                    "entries",
                    json!({ "type": "array", "items": r("AuditEntry") }),
                )],
            ),
        ),
        (
            "Health",
            object("", &["status"], vec![("status", enum_of(["ok"]))]),
        ),
        (
            "Readiness",
            object(
                "",
                &["store", "redis", "role"],
                vec![
                    ("store", enum_of(["ready", "loading"])),
                    ("redis", enum_of(["ok", "unreachable", "disabled"])),
                    ("role", enum_of(["leader", "standby", "starting"])),
                ],
            ),
        ),
        (
            "ClusterState",
            object(
                "This server's part among several on one PostgreSQL store.",
                &["role", "leader", "lag_ms"],
                vec![
                    ("role", enum_of(["leader", "standby", "starting"])),
                    (
                        "leader",
                        json!({ "type": "string", "nullable": true, "description": "The leader's advertised URL (`--advertise`), if known." }),
                    ),
                    (
                        "lag_ms",
                        json!({ "type": "integer", "format": "int64", "minimum": 0, "nullable": true, "description": "How far this server trails the log: 0 on the leader, `null` while starting." }),
                    ),
                ],
            ),
        ),
    ]
}

fn count_props() -> Vec<(&'static str, Value)> {
    vec![
        (
            "in_scope",
            count("Residents in the round's scope (frozen at the close)."),
        ),
        (
            "sampled",
            count("Sampled inside `[opens_at, deadline]`, whenever the record arrived."),
        ),
        (
            "late",
            count("The part of `sampled` whose record arrived after the close."),
        ),
        ("made_up", count("Sampled after the deadline.")),
        ("exempt", count("Covered by an exemption.")),
        (
            "missing",
            count("In scope, not sampled, not made up, not exempt."),
        ),
    ]
}

const COUNT_KEYS: [&str; 6] = [
    "in_scope", "sampled", "late", "made_up", "exempt", "missing",
];

fn round_schemas() -> Vec<(&'static str, Value)> {
    let mut coverage_props = vec![("area", r("AreaPath"))];
    coverage_props.extend(count_props());
    coverage_props.push((
        "children",
        json!({ "type": "array", "items": r("Coverage"), "description": "Child nodes with at least one resident in scope, sorted by area; `[]` at the bottom." }),
    ));
    let mut coverage_required = vec!["area"];
    coverage_required.extend(COUNT_KEYS);
    coverage_required.push("children");
    vec![
        (
            "RoundRequest",
            closed_object(
                "",
                &["name", "scope", "opens_at", "deadline"],
                vec![
                    (
                        "name",
                        json!({ "type": "string", "minLength": 1, "maxLength": 200, "pattern": NOT_BLANK }),
                    ),
                    (
                        "scope",
                        json!({ "type": "array", "minItems": 1, "items": r("AreaPath"), "description": "Area paths in the register." }),
                    ),
                    ("opens_at", time("", false)),
                    ("deadline", time("After `opens_at`.", false)),
                ],
            ),
        ),
        (
            "Counts",
            object(
                "Each in-scope resident is counted in exactly one of `sampled`, `made_up`, `exempt`, \
                 `missing` (in that order of precedence): `in_scope = sampled + made_up + exempt + missing`.",
                &COUNT_KEYS,
                count_props(),
            ),
        ),
        (
            "Round",
            object(
                "",
                &[
                    "id",
                    "name",
                    "scope",
                    "opens_at",
                    "deadline",
                    "state",
                    "closed_at",
                    "counts",
                ],
                vec![
                    ("id", r("RoundId")),
                    ("name", string("")),
                    ("scope", json!({ "type": "array", "items": r("AreaPath") })),
                    ("opens_at", time("", false)),
                    (
                        "deadline",
                        time("Moved to the close when closed early.", false),
                    ),
                    ("state", enum_of(["open", "closed", "archived"])),
                    ("closed_at", time("Null while open.", true)),
                    ("counts", r("Counts")),
                ],
            ),
        ),
        (
            "RoundList",
            object(
                "",
                &["rounds"],
                vec![("rounds", json!({ "type": "array", "items": r("Round") }))],
            ),
        ),
        (
            "CloseAnswer",
            object(
                "",
                &["round", "flipped"],
                vec![
                    ("round", r("Round")),
                    (
                        "flipped",
                        count("How many people this close flagged (0 when it was already closed)."),
                    ),
                ],
            ),
        ),
        (
            "Head",
            object(
                "A responsible head of an area node.",
                &["title", "name", "phone"],
                vec![
                    ("title", string("")),
                    ("name", string("")),
                    ("phone", string("")),
                ],
            ),
        ),
        (
            "MissingPerson",
            object(
                "",
                &["person_id", "name", "phone", "area", "household", "head"],
                vec![
                    ("person_id", r("MaskedPersonId")),
                    ("name", string("")),
                    ("phone", string("")),
                    ("area", r("AreaPath")),
                    ("household", string("")),
                    ("head", {
                        let mut v = nullable_ref("Head");
                        v["description"] = json!(
                            "The head of the person's own area node, or failing that the nearest one above; null if none."
                        );
                        v
                    }),
                ],
            ),
        ),
        (
            "RepeatMissing",
            object(
                "",
                &["area", "last", "min", "total", "people"],
                vec![
                    (
                        "area",
                        json!({ "type": "string", "nullable": true, "description": "The area shown; null for an admin's whole city." }),
                    ),
                    ("last", count("")),
                    ("min", count("")),
                    ("total", count("")),
                    (
                        "people",
                        json!({ "type": "array", "items": { "allOf": [
                            r("MissingPerson"),
                            object("", &["misses", "round_ids"], vec![
                                ("misses", count("How many of the rounds looked at still flag them.")),
                                ("round_ids", json!({ "type": "array", "items": r("RoundId") })),
                            ]),
                        ] } }),
                    ),
                ],
            ),
        ),
        (
            "MissingList",
            object(
                "",
                &["round_id", "area", "total", "people"],
                vec![
                    ("round_id", r("RoundId")),
                    (
                        "area",
                        json!({ "type": "string", "nullable": true, "description": "The area shown; null for an admin's whole round." }),
                    ),
                    ("total", count("")),
                    (
                        "people",
                        json!({ "type": "array", "items": r("MissingPerson") }),
                    ),
                ],
            ),
        ),
        (
            "MissingGroup",
            object(
                "",
                &["head", "people"],
                vec![
                    ("head", {
                        let mut v = nullable_ref("Head");
                        v["description"] = json!("Null for the last group: people without a head.");
                        v
                    }),
                    (
                        "people",
                        json!({ "type": "array", "items": r("MissingPerson") }),
                    ),
                ],
            ),
        ),
        (
            "MissingGroups",
            object(
                "`group_by=head`.",
                &["round_id", "area", "total", "groups"],
                vec![
                    ("round_id", r("RoundId")),
                    ("area", json!({ "type": "string", "nullable": true })),
                    ("total", count("")),
                    (
                        "groups",
                        json!({ "type": "array", "items": r("MissingGroup") }),
                    ),
                ],
            ),
        ),
        (
            "Coverage",
            object(
                "One area node; `area` is the full path.",
                &coverage_required,
                coverage_props,
            ),
        ),
        (
            "ProgressBucket",
            object(
                "",
                &["hour", "sampled"],
                vec![
                    ("hour", time("The start of the hour, `+08:00`.", false)),
                    (
                        "sampled",
                        count(
                            "In-scope people whose first sample inside the window fell in this hour.",
                        ),
                    ),
                ],
            ),
        ),
        (
            "Progress",
            object(
                "",
                &["round_id", "area", "buckets"],
                vec![
                    ("round_id", r("RoundId")),
                    ("area", json!({ "type": "string", "nullable": true })),
                    (
                        "buckets",
                        json!({ "type": "array", "items": r("ProgressBucket") }),
                    ),
                ],
            ),
        ),
    ]
}

fn description() -> String {
    let mut table = String::from("| status | code | meaning |\n|---|---|---|\n");
    for &c in Code::ALL {
        let _ = writeln!(
            table,
            "| {} | `{}` | {} |",
            c.status().as_u16(),
            c.as_str(),
            code_meaning(c)
        );
    }
    format!(
        "Mass-testing rounds: sample records in, missing lists and gate colours out.\n\n\
         **Conventions.** JSON bodies, UTF-8; unknown fields are rejected (`unknown_field`). Times are \
         RFC 3339 with an explicit offset; answers use `+08:00` (Asia/Shanghai). Every `/v1` call needs \
         `Authorization: Bearer <token>` (`401 unauthorized` without a live one, `403 forbidden` for a \
         role without the permission, `403 out_of_scope` for an area outside an official's, audited as \
         `denied`; a resident outside an official's area is `404 unknown_resident` for it, exactly as \
         if not registered: no answer names where a resident lives). Bodies over \
         {} MiB: `413 payload_too_large`. Every response carries `Cache-Control: no-store`. A write that \
         cannot be made durable is `503 storage_unavailable` and nothing of it is acknowledged; under \
         overload writes are shed with `503 overloaded` and `Retry-After`. `500 internal` bodies carry \
         `error.request_id` and nothing of the cause. `null` is not a value: an optional field is \
         either absent or of its type (`\"note\": null` is `400 invalid_field`).\n\n\
         **Methods and paths.** `HEAD` is served wherever `GET` is (each `GET` below has its `HEAD`: \
         the same status and headers, no body). A path below with a method it does not serve is \
         `405 method_not_allowed` with an `Allow` header listing the methods it does serve; a path \
         not below is `404 not_found`; both in the error shape.\n\n\
         **Headers.** Every response carries `Cache-Control: no-store`, `X-Content-Type-Options: \
         nosniff`, `Referrer-Policy: no-referrer` and `X-Frame-Options: DENY`; HTML pages (`/`, \
         `/docs/`) also carry a `Content-Security-Policy` with `frame-ancestors 'none'` that loads \
         nothing from other origins.\n\n\
         **Roles.** `admin`: everything. `official` (bound to an area): rounds, exemptions, missing \
         lists, coverage, progress and resident look-ups inside it. `scanner` (bound to a site): \
         `POST /v1/records`. `lab`: `POST /v1/results`. `gate`: `GET /v1/status/{{person_id}}`. Each \
         operation's description names its roles (also as `x-roles`).\n\n\
         **Errors** are `{{\"error\": {{\"code\", \"message\"}}}}`; each operation lists the codes it \
         can answer under each status. The codes:\n\n{table}",
        MAX_BODY / (1024 * 1024)
    )
}

/// The `HEAD` twin of a `GET` operation: the same parameters, statuses and
/// headers, no body.
fn head_of(get: &Value) -> Value {
    let mut op = get.clone();
    op["operationId"] = json!(format!(
        "{}Head",
        get["operationId"].as_str().unwrap_or("op")
    ));
    op["summary"] = json!(format!(
        "{} (headers only)",
        get["summary"].as_str().unwrap_or_default()
    ));
    op["description"] = json!(format!(
        "`HEAD`: answered exactly as `GET` (status and headers), without a body.\n\n{}",
        get["description"].as_str().unwrap_or_default()
    ));
    if let Some(responses) = op["responses"].as_object_mut() {
        for resp in responses.values_mut() {
            if let Some(r) = resp.as_object_mut() {
                r.remove("content");
            }
        }
    }
    op
}

fn build() -> Value {
    let mut paths: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    for op in operations() {
        let item = paths.entry(op.path).or_default();
        let json = op.to_json();
        if op.method == "get" {
            item.insert("head".to_owned(), head_of(&json));
        }
        let prev = item.insert(op.method.to_owned(), json);
        debug_assert!(prev.is_none(), "{} {} documented twice", op.method, op.path);
    }
    let mut schemas = Map::new();
    for (name, s) in [
        value_schemas(),
        error_schemas(),
        batch_schemas(),
        account_schemas(),
        round_schemas(),
    ]
    .concat()
    {
        let prev = schemas.insert(name.to_owned(), s);
        debug_assert!(prev.is_none(), "schema {name} defined twice");
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "rollcall",
            "version": "1",
            "description": description(),
        },
        "servers": [{ "url": "/" }],
        "tags": [
            { "name": "tokens", "description": "Issue and revoke bearer tokens." },
            { "name": "register", "description": "The register of residents and heads (CSV imports)." },
            { "name": "residents", "description": "One resident." },
            { "name": "records", "description": "Sample-collection records from testing sites." },
            { "name": "results", "description": "Lab results per tube." },
            { "name": "rounds", "description": "Mass-testing rounds and the officials' views of them." },
            { "name": "exemptions", "description": "People excused from rounds for a while." },
            { "name": "status", "description": "What venue gates see." },
            { "name": "audit", "description": "Who pulled lists, unmasked, cleared, exempted, imported." },
            { "name": "operations", "description": "Health, readiness, metrics, this document, the dashboard." }
        ],
        "security": [{ "bearer": [] }],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token from `POST /v1/tokens` (or the bootstrap admin token)."
                }
            },
            "schemas": schemas,
            "responses": {
                "NotFound": {
                    "description": "`404 not_found`: no route has this path.",
                    "content": json_content(r("Error")),
                },
                "MethodNotAllowed": {
                    "description": "`405 method_not_allowed`: the path is served, not with this method.",
                    "headers": {
                        "Allow": {
                            "description": "The methods the path serves, e.g. `GET, HEAD, POST`.",
                            "schema": { "type": "string" }
                        }
                    },
                    "content": json_content(r("Error")),
                },
            },
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn area_regex() -> regex::Regex {
        regex::Regex::new(&area_path_pattern()).unwrap()
    }

    #[test]
    fn the_token_request_shapes_cover_every_role_once() {
        let doc = document();
        let mut roles: Vec<&str> = doc["components"]["schemas"]["TokenRequest"]["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|v| v["properties"]["role"]["enum"].as_array().unwrap())
            .map(|r| r.as_str().unwrap())
            .collect();
        roles.sort_unstable();
        let mut all: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
        all.sort_unstable();
        assert_eq!(roles, all);
    }

    #[test]
    fn the_area_path_pattern_agrees_with_the_parser_on_the_edges() {
        let re = area_regex();
        let deep = vec!["a"; 16].join("/");
        let too_deep = vec!["a"; 17].join("/");
        for s in [
            "崇文路街道/学院社区/第03网格/5号楼/3层",
            "a",
            "a b/c",
            "",
            "/a",
            "a/",
            "a//b",
            " a",
            "a ",
            "a/\u{3000}b",
            "a\u{0}b",
            "a\u{85}",
            "a\u{9f}b",
            "a\u{feff}",
            "a\tb",
            deep.as_str(),
            too_deep.as_str(),
        ] {
            assert_eq!(
                re.is_match(s),
                crate::domain::AreaPath::parse(s).is_ok(),
                "{s:?}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn the_area_path_pattern_agrees_with_the_parser(
            s in "([a-z/ \\t\\u{0}-\\u{1f}\\u{7f}-\\u{a0}\\u{2000}-\\u{200b}\\u{3000}\\u{feff}崇文]){0,40}"
        ) {
            proptest::prop_assert_eq!(
                area_regex().is_match(&s),
                crate::domain::AreaPath::parse(&s).is_ok(),
                "{:?}", s
            );
        }
    }

    #[test]
    fn every_error_code_is_described_in_the_document() {
        let doc = document();
        let listed = doc["components"]["schemas"]["ErrorCode"]["enum"]
            .as_array()
            .unwrap()
            .clone();
        let want: Vec<Value> = Code::ALL.iter().map(|c| json!(c.as_str())).collect();
        assert_eq!(listed, want);
        let text = doc["info"]["description"].as_str().unwrap();
        for c in Code::ALL {
            assert!(text.contains(&format!("| {} | `{}` |", c.status().as_u16(), c.as_str())));
        }
    }

    #[test]
    fn every_error_response_lists_only_codes_of_its_status() {
        let doc = document();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                for (status, resp) in op["responses"].as_object().unwrap() {
                    let Some(codes) = resp.pointer("/content/application~1json/schema/allOf/1/properties/error/properties/code/enum") else {
                        continue;
                    };
                    for c in codes.as_array().unwrap() {
                        let code = Code::ALL
                            .iter()
                            .find(|k| k.as_str() == c)
                            .expect("a known code");
                        assert_eq!(
                            code.status().as_u16().to_string(),
                            *status,
                            "{method} {path} {c}"
                        );
                    }
                }
            }
        }
    }

    /// Asserts every `$ref` under `v` names a schema of `schemas`.
    fn walk(v: &Value, schemas: &Map<String, Value>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(s)) = m.get("$ref") {
                    let name = s
                        .strip_prefix("#/components/schemas/")
                        .expect("a schema ref");
                    assert!(schemas.contains_key(name), "dangling {s}");
                }
                for x in m.values() {
                    walk(x, schemas);
                }
            }
            Value::Array(a) => {
                for x in a {
                    walk(x, schemas);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn every_schema_reference_resolves() {
        let doc = document();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        walk(&doc, schemas);
    }
}

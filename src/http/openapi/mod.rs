//! The OpenAPI 3.0 document of `docs/api.md`, served at `/openapi.json` and browsed
//! with Swagger UI at `/docs`: the assembly of the operations and schemas the
//! route files declare beside their handlers (`routes::ENDPOINTS`,
//! `routes::SCHEMAS`), the schemas no one route owns ([`shared`]), and the
//! document's description.
//!
//! Written out by hand as JSON (not derived from the handlers) because the
//! handlers read their bodies field by field to give the contract's exact
//! error codes; a derive would describe serde's behaviour, not theirs. Drift
//! is caught instead by what the document is built from and by tests:
//! methods, paths and roles are the route table's own (the handlers check the
//! same roles); error codes and their statuses come from [`Code::ALL`] /
//! [`Code::as_str`] / [`Code::status`], closed sets from the domain enums'
//! `ALL`, limits from the constants the server enforces;
//! `tests/integration/openapi.rs` checks that every route is served and
//! every documented query value accepted, and
//! `tests/integration/schemas.rs` that the bodies the server answers
//! validate against their documented schemas.
//!
//! - `build.rs`: the builders route files write operations and schemas with.
//! - `shared.rs`: the shared schemas.

pub(crate) mod build;
mod shared;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use crate::http::body::MAX_BODY;
use crate::http::error::Code;
use crate::http::routes;
use build::{code_meaning, json_content, r};

/// The document. Built once; each call returns a copy.
pub fn document() -> Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(build).clone()
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
    for e in routes::endpoints() {
        let item = paths.entry(e.path).or_default();
        let json = (e.doc)().to_json(e.roles);
        let method = e.method.to_ascii_lowercase();
        if method == "get" {
            item.insert("head".to_owned(), head_of(&json));
        }
        let prev = item.insert(method, json);
        debug_assert!(prev.is_none(), "{} {} documented twice", e.method, e.path);
    }
    let mut schemas = Map::new();
    for (name, s) in std::iter::once(shared::schemas as routes::SchemasOf)
        .chain(routes::SCHEMAS.iter().copied())
        .flat_map(|f| f())
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
    use super::build::area_path_pattern;
    use super::*;
    use crate::domain::Role;

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

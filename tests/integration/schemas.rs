//! Every body the server answers matches what `/openapi.json` says of its
//! operation and status: drives each endpoint to its success answers and
//! its usual refusals on a real server, and validates each JSON body against
//! the schema documented for that operation and status (with
//! `#/components/schemas/…` references resolved), each other body against
//! the documented media types. The document is hand-written JSON beside the
//! handlers, so this is what ties the two together.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::helpers::*;

const HOUR: i64 = 3_600_000;
const A: &str = "崇文路街道/学院社区";
const B: &str = "崇文路街道/南苑社区";

/// An OpenAPI 3.0 schema as JSON Schema: `nullable` becomes one more type
/// (or one more value of an `enum`; a `nullable` schema without `type`, an
/// `allOf` of a reference, becomes "that, or null"); and every object that
/// lists its properties is closed, so a key the server sends that the
/// document does not describe is caught. The members of an `allOf` describe
/// one object together, so they are left open, down to their leaves (a
/// referenced one inlined).
fn json_schema(v: &Value, schemas: &Value, close: bool) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, x) in m {
                let x = match (k.as_str(), x) {
                    ("allOf", Value::Array(members)) => Value::Array(
                        members
                            .iter()
                            .map(|member| match member["$ref"].as_str() {
                                Some(r) => json_schema(
                                    &schemas[r.trim_start_matches("#/components/schemas/")],
                                    schemas,
                                    false,
                                ),
                                None => json_schema(member, schemas, false),
                            })
                            .collect(),
                    ),
                    ("properties", Value::Object(props)) => Value::Object(
                        props
                            .iter()
                            .map(|(name, p)| (name.clone(), json_schema(p, schemas, close)))
                            .collect(),
                    ),
                    ("example", _) => x.clone(),
                    _ => json_schema(x, schemas, close),
                };
                out.insert(k.clone(), x);
            }
            if close && out.contains_key("properties") && !out.contains_key("additionalProperties")
            {
                out.insert("additionalProperties".into(), json!(false));
            }
            if out.remove("nullable") == Some(json!(true)) {
                if let Some(t) = out.get("type").cloned() {
                    out.insert("type".into(), json!([t, "null"]));
                    if let Some(Value::Array(e)) = out.get_mut("enum") {
                        e.push(Value::Null);
                    }
                } else {
                    return json!({ "anyOf": [Value::Object(out), { "type": "null" }] });
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| json_schema(x, schemas, close)).collect()),
        other => other.clone(),
    }
}

/// The document, and which operations' success answers were checked.
struct Contract {
    doc: Value,
    schemas: Map<String, Value>,
    answered: BTreeSet<(String, String)>,
}

impl Contract {
    fn new(doc: Value) -> Contract {
        let raw = &doc["components"]["schemas"];
        let schemas = raw
            .as_object()
            .unwrap()
            .iter()
            .map(|(name, x)| (name.clone(), json_schema(x, raw, true)))
            .collect();
        Contract {
            doc,
            schemas,
            answered: BTreeSet::new(),
        }
    }

    /// What is wrong with `body` by `schema` (references into the
    /// document's schemas resolved); empty when it validates.
    fn errors(&self, schema: &Value, body: &Value) -> Vec<String> {
        let root = json!({
            "components": { "schemas": self.schemas },
            "allOf": [json_schema(schema, &self.doc["components"]["schemas"], true)],
        });
        let v = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft4)
            .should_validate_formats(true)
            .build(&root)
            .unwrap_or_else(|e| panic!("the schema does not compile: {e}: {schema}"));
        v.iter_errors(body)
            .map(|e| format!("at {}: {e}", e.instance_path()))
            .collect()
    }

    /// Asserts `body` validates against `schema`.
    fn validate(&self, schema: &Value, body: &Value, what: &str) {
        let errors = self.errors(schema, body);
        assert!(
            errors.is_empty(),
            "{what}: the body does not match its documented schema:\n{}\nbody: {body}",
            errors.join("\n")
        );
    }

    /// Checks `r`, the answer to `method` on the route `template`, against
    /// the document; returns its JSON body (or `null`).
    fn check(&mut self, method: &Method, template: &str, r: &Resp) -> Value {
        let what = format!("{method} {template} → {}", r.status);
        let op = &self.doc["paths"][template][method.as_str().to_lowercase()];
        assert!(op.is_object(), "{what}: no such operation in the document");
        let doc = &op["responses"][r.status.to_string()];
        assert!(
            doc.is_object(),
            "{what}: a status the document does not list: {}",
            r.text()
        );
        if (200..400).contains(&r.status) {
            self.answered
                .insert((method.as_str().to_owned(), template.to_owned()));
        }
        let media = r.headers.get("content-type").map(|v| {
            v.to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .trim()
                .to_owned()
        });
        let Some(media) = media.filter(|_| !r.body.is_empty()) else {
            assert!(
                doc["content"].is_null(),
                "{what}: no body, but the document gives one"
            );
            return Value::Null;
        };
        let content = &doc["content"][&media];
        assert!(
            content.is_object(),
            "{what}: answered `{media}`, which the document does not list: {}",
            doc["content"]
        );
        if media != "application/json" {
            return Value::Null;
        }
        let body = r.json();
        self.validate(&content["schema"], &body, &what);
        body
    }
}

/// The test's calls, each checked against the document as it is made.
struct Client {
    app: TestApp,
    contract: Contract,
}

impl Client {
    async fn call(
        &mut self,
        method: Method,
        template: &str,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
    ) -> (u16, Value) {
        let r = self.app.req(method.clone(), path, token, body).await;
        let body = self.contract.check(&method, template, &r);
        (r.status, body)
    }

    async fn get(&mut self, template: &str, path: &str, token: &str) -> (u16, Value) {
        self.call(Method::GET, template, path, Some(token), None)
            .await
    }

    async fn post(
        &mut self,
        template: &str,
        path: &str,
        token: &str,
        body: &Value,
    ) -> (u16, Value) {
        let b = ("application/json", serde_json::to_vec(body).unwrap());
        self.call(Method::POST, template, path, Some(token), Some(b))
            .await
    }

    async fn post_csv(&mut self, template: &str, token: &str, csv: &str) -> (u16, Value) {
        let b = ("text/csv", csv.as_bytes().to_vec());
        self.call(Method::POST, template, template, Some(token), Some(b))
            .await
    }

    async fn delete(&mut self, template: &str, path: &str, token: &str) -> (u16, Value) {
        self.call(Method::DELETE, template, path, Some(token), None)
            .await
    }
}

/// The check itself: a body its schema allows passes (a `nullable` field
/// as `null` too); a wrong value, a bad time, an undocumented key and an
/// error code the operation does not list under that status are refused.
#[test]
fn the_check_refuses_what_the_schema_does_not_allow() {
    let contract = Contract::new(rollcall::http::openapi::document());
    let doc = &contract.doc;
    let status = json!({ "$ref": "#/components/schemas/Status" });
    let good = json!({"color": "green", "reasons": [], "valid_until": null,
                      "last_sample_at": "2022-04-19T08:15:00+08:00", "last_negative_at": null});
    contract.validate(&status, &good, "a green status");
    let refused = |body: Value, schema: &Value| !contract.errors(schema, &body).is_empty();
    let mut purple = good.clone();
    purple["color"] = json!("purple");
    assert!(refused(purple, &status));
    let mut late = good.clone();
    late["last_sample_at"] = json!("yesterday");
    assert!(refused(late, &status), "date-time formats are checked");
    let mut extra = good.clone();
    extra["colour"] = json!("green");
    assert!(
        refused(extra, &status),
        "a key the document does not describe"
    );
    let round = json!({ "$ref": "#/components/schemas/Round" });
    let r = &doc["paths"]["/v1/rounds/{id}"]["get"]["responses"];
    let not_found = &r["404"]["content"]["application/json"]["schema"];
    let e = |code: &str| json!({"error": {"code": code, "message": "m"}});
    contract.validate(not_found, &e("unknown_round"), "unknown_round");
    assert!(refused(e("unknown_token"), not_found));
    assert!(refused(json!({"id": "1"}), &round));
}

/// Asserts the call answered `status` (and `code`, for an error).
fn expect((status, body): (u16, Value), want: u16, code: &str) -> Value {
    assert_eq!(status, want, "{body}");
    if !code.is_empty() {
        assert_eq!(body["error"]["code"], code, "{body}");
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_matches_the_schema_its_operation_documents() {
    let app = spawn_app().await;
    let doc = app.get("/openapi.json", ADMIN).await.json();
    let mut c = Client {
        app,
        contract: Contract::new(doc),
    };
    operations_endpoints(&mut c).await;
    let (scanner, lab, gate, official) = tokens(&mut c).await;
    let people = register(&mut c).await;
    uploads(&mut c, &scanner, &lab, &people).await;
    residents_and_gates(&mut c, &gate, &people).await;
    let round = rounds(&mut c, &official).await;
    exemptions(&mut c, &official, &people).await;
    let (s, body) = c
        .get("/v1/audit", "/v1/audit?since=2000-01-01T00:00:00Z", ADMIN)
        .await;
    assert_eq!(s, 200);
    assert!(!body["entries"].as_array().unwrap().is_empty(), "{body}");
    expect(
        c.get("/v1/audit", "/v1/audit?since=x", ADMIN).await,
        400,
        "invalid_query",
    );
    expect(
        c.get("/v1/rounds/{id}", &format!("/v1/rounds/{round}"), "nope")
            .await,
        401,
        "unauthorized",
    );

    // Every operation of the document was answered with a success.
    let documented: BTreeSet<(String, String)> = rollcall::http::routes::endpoints()
        .map(|e| (e.method.to_owned(), e.path.to_owned()))
        .collect();
    let only_on_several_servers = ("GET".to_owned(), "/standby".to_owned());
    let missed: Vec<_> = documented
        .difference(&c.contract.answered)
        .filter(|m| **m != only_on_several_servers)
        .collect();
    assert!(
        missed.is_empty(),
        "never answered with a success: {missed:?}"
    );
}

async fn operations_endpoints(c: &mut Client) {
    for p in [
        "/healthz",
        "/readyz",
        "/leader",
        "/metrics",
        "/openapi.json",
        "/",
    ] {
        expect(c.get(p, p, ADMIN).await, 200, "");
    }
    // The one server on SQLite is the leader, never a standby: `/standby` is
    // 503 with the same body as its 200 (`tests/integration/cluster.rs`
    // drives it to 200 on a standby of several servers on PostgreSQL).
    let body = expect(c.get("/standby", "/standby", "").await, 503, "");
    assert_eq!(body["role"], "leader", "{body}");
    let r = c
        .app
        .client
        .get(format!("{}/docs", c.app.base))
        .send()
        .await
        .unwrap();
    assert!(r.url().path().ends_with("/docs/"), "{}", r.url());
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_redirects
        .get(format!("{}/docs", c.app.base))
        .send()
        .await
        .unwrap();
    let r = Resp {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        body: r.bytes().await.unwrap().to_vec(),
    };
    c.contract.check(&Method::GET, "/docs", &r);
    expect(c.get("/docs/{file}", "/docs/", ADMIN).await, 200, "");
    expect(
        c.get("/docs/{file}", "/docs/no-such-file.js", ADMIN).await,
        404,
        "not_found",
    );
}

/// Issues one token of each bound role; returns (scanner, lab, gate, official).
async fn tokens(c: &mut Client) -> (String, String, String, String) {
    let t = "/v1/tokens";
    let mut out = Vec::new();
    for b in [
        json!({"role": "scanner", "name": "S01 phone", "site": "S01"}),
        json!({"role": "lab", "name": "lab"}),
        json!({"role": "gate", "name": "gate"}),
        json!({"role": "official", "name": "A", "area": A}),
    ] {
        let body = expect(c.post(t, t, ADMIN, &b).await, 201, "");
        out.push(body["token"].as_str().unwrap().to_owned());
    }
    expect(
        c.post(t, t, ADMIN, &json!({"role": "scanner", "name": "x"}))
            .await,
        400,
        "invalid_field",
    );
    expect(
        c.post(t, t, ADMIN, &json!({"role": "lab", "name": "x", "pin": 1}))
            .await,
        400,
        "unknown_field",
    );
    let bad = ("application/json", b"{".to_vec());
    expect(
        c.call(Method::POST, t, t, Some(ADMIN), Some(bad)).await,
        400,
        "malformed_json",
    );
    let text = ("text/plain", b"{}".to_vec());
    expect(
        c.call(Method::POST, t, t, Some(ADMIN), Some(text)).await,
        415,
        "unsupported_media_type",
    );
    expect(c.post(t, t, &out[2], &json!({})).await, 403, "forbidden");
    let list = expect(c.get(t, t, ADMIN).await, 200, "");
    let victim = expect(
        c.post(t, t, ADMIN, &json!({"role": "lab", "name": "old"}))
            .await,
        201,
        "",
    );
    let path = format!("/v1/tokens/{}", victim["id"].as_str().unwrap());
    expect(c.delete("/v1/tokens/{id}", &path, ADMIN).await, 204, "");
    expect(
        c.delete("/v1/tokens/{id}", &path, ADMIN).await,
        404,
        "unknown_token",
    );
    assert!(list["tokens"].as_array().unwrap().len() >= 5, "{list}");
    let mut out = out.into_iter();
    (
        out.next().unwrap(),
        out.next().unwrap(),
        out.next().unwrap(),
        out.next().unwrap(),
    )
}

/// Imports the small city and its heads; returns its people.
async fn register(c: &mut Client) -> Vec<(String, String)> {
    let (csv, people) = small_city(2);
    expect(c.post_csv("/v1/register", ADMIN, &csv).await, 200, "");
    let bad = "person_id,name,phone,area,household\n123,x,13900000000,a/b,h\n";
    let body = expect(
        c.post_csv("/v1/register", ADMIN, bad).await,
        400,
        "invalid_register",
    );
    assert!(!body["lines"].as_array().unwrap().is_empty(), "{body}");
    expect(c.post_csv("/v1/heads", ADMIN, HEADS_CSV).await, 200, "");
    expect(
        c.post_csv("/v1/heads", ADMIN, "area,title\nx,y\n").await,
        400,
        "invalid_register",
    );
    people
}

async fn uploads(c: &mut Client, scanner: &str, lab: &str, people: &[(String, String)]) {
    let now = c.app.now();
    let rec = |i: usize, tube: &str| json!({"person_id": people[i].0, "tube_id": tube, "collected_at": now});
    let body = expect(
        c.post(
            "/v1/records",
            "/v1/records",
            scanner,
            &json!({"records": [rec(0, "T1"), rec(1, "T1"), rec(0, "T1"),
                {"person_id": "123", "tube_id": "T2", "collected_at": now},
                {"person_id": people[2].0, "tube_id": "T2", "collected_at": now, "x": 1},
                {"person_id": pid("19900101", 7), "tube_id": "T3", "collected_at": now}]}),
        )
        .await,
        200,
        "",
    );
    assert_eq!(body["rejected"].as_array().unwrap().len(), 2, "{body}");
    assert_eq!(body["unregistered"], 1, "{body}");
    let records = "/v1/records";
    expect(
        c.post(records, records, scanner, &json!({"records": []}))
            .await,
        400,
        "empty_batch",
    );
    expect(
        c.post(records, records, lab, &json!({"records": [rec(3, "T4")]}))
            .await,
        403,
        "forbidden",
    );
    let results = "/v1/results";
    let res =
        |tube: &str, result: &str| json!({"tube_id": tube, "result": result, "reported_at": now});
    let body = expect(
        c.post(
            results,
            results,
            lab,
            &json!({"results": [res("T1", "negative"), res("T1", "positive"),
                res("T9", "negative"), res("T3", "maybe")]}),
        )
        .await,
        200,
        "",
    );
    assert_eq!(body["rejected"].as_array().unwrap().len(), 2, "{body}");
    expect(
        c.post(results, results, lab, &json!({"results": [], "x": 1}))
            .await,
        400,
        "unknown_field",
    );
}

async fn residents_and_gates(c: &mut Client, gate: &str, people: &[(String, String)]) {
    let one = "/v1/residents/{person_id}";
    let path = format!("/v1/residents/{}", people[0].0);
    expect(c.get(one, &path, ADMIN).await, 200, "");
    let nobody = format!("/v1/residents/{}", pid("19900101", 8));
    expect(c.get(one, &nobody, ADMIN).await, 404, "unknown_resident");
    expect(
        c.get(one, "/v1/residents/123", ADMIN).await,
        400,
        "invalid_person_id",
    );
    let clear = "/v1/residents/{person_id}/clear";
    expect(
        c.post(
            clear,
            &format!("{path}/clear"),
            ADMIN,
            &json!({"note": "retest"}),
        )
        .await,
        200,
        "",
    );
    expect(
        c.post(
            clear,
            &format!("{path}/clear"),
            ADMIN,
            &json!({"note": null}),
        )
        .await,
        400,
        "invalid_field",
    );
    let status = "/v1/status/{person_id}";
    for p in people.iter().take(3) {
        expect(
            c.get(status, &format!("/v1/status/{}", p.0), gate).await,
            200,
            "",
        );
    }
    expect(
        c.get(status, "/v1/status/123", gate).await,
        400,
        "invalid_person_id",
    );
    let gone = format!("/v1/residents/{}", people.last().unwrap().0);
    expect(c.delete(one, &gone, ADMIN).await, 204, "");
    expect(c.delete(one, &gone, ADMIN).await, 404, "unknown_resident");
}

/// A round over the city: created, read, its views, closed; returns its id.
async fn rounds(c: &mut Client, official: &str) -> String {
    let now = c.app.now();
    let new = |scope: &[&str], opens: i64, deadline: i64| {
        json!({"name": "第1轮", "scope": scope, "opens_at": now.plus_millis(opens),
               "deadline": now.plus_millis(deadline)})
    };
    let r = "/v1/rounds";
    let body = expect(
        c.post(r, r, ADMIN, &new(&[A, B], -HOUR, HOUR)).await,
        201,
        "",
    );
    let id = body["id"].as_str().unwrap().to_owned();
    expect(
        c.post(r, r, ADMIN, &new(&[A], HOUR, -HOUR)).await,
        400,
        "invalid_window",
    );
    expect(
        c.post(r, r, official, &new(&[B], -HOUR, HOUR)).await,
        403,
        "out_of_scope",
    );
    expect(c.get(r, r, ADMIN).await, 200, "");
    expect(c.get(r, r, official).await, 200, "");
    let one = "/v1/rounds/{id}";
    let path = format!("/v1/rounds/{id}");
    expect(c.get(one, &path, ADMIN).await, 200, "");
    expect(c.get(one, &path, official).await, 200, "");
    expect(
        c.get(one, "/v1/rounds/999", ADMIN).await,
        404,
        "unknown_round",
    );

    let missing = "/v1/rounds/{id}/missing";
    for q in [
        "",
        "?group_by=head",
        "?format=csv",
        "?format=text",
        "?format=xlsx",
        "?unmask=true",
    ] {
        expect(
            c.get(missing, &format!("{path}/missing{q}"), ADMIN).await,
            200,
            "",
        );
    }
    expect(
        c.get(missing, &format!("{path}/missing"), official).await,
        200,
        "",
    );
    expect(
        c.get(missing, &format!("{path}/missing?format=pdf"), ADMIN)
            .await,
        400,
        "invalid_query",
    );
    expect(
        c.get(missing, &format!("{path}/missing?area={B}"), official)
            .await,
        403,
        "out_of_scope",
    );
    let coverage = "/v1/rounds/{id}/coverage";
    expect(
        c.get(coverage, &format!("{path}/coverage?depth=3"), ADMIN)
            .await,
        200,
        "",
    );
    expect(
        c.get(coverage, &format!("{path}/coverage?depth=99"), ADMIN)
            .await,
        400,
        "invalid_query",
    );
    expect(
        c.get(coverage, &format!("{path}/coverage?area=nowhere"), ADMIN)
            .await,
        400,
        "unknown_area",
    );
    let progress = "/v1/rounds/{id}/progress";
    expect(
        c.get(progress, &format!("{path}/progress"), ADMIN).await,
        200,
        "",
    );
    expect(
        c.get(progress, &format!("{path}/progress"), official).await,
        200,
        "",
    );

    let close = "/v1/rounds/{id}/close";
    expect(
        c.post(close, &format!("{path}/close"), official, &json!({}))
            .await,
        403,
        "out_of_scope",
    );
    expect(
        c.post(close, &format!("{path}/close"), ADMIN, &json!({}))
            .await,
        200,
        "",
    );
    expect(
        c.post(close, &format!("{path}/close"), ADMIN, &json!({}))
            .await,
        200,
        "",
    );

    let repeat = "/v1/repeat-missing";
    for q in [
        "",
        "?last=3&min=1",
        "?format=csv",
        "?format=xlsx",
        "?unmask=true",
    ] {
        expect(c.get(repeat, &format!("{repeat}{q}"), ADMIN).await, 200, "");
    }
    expect(c.get(repeat, repeat, official).await, 200, "");
    expect(
        c.get(repeat, &format!("{repeat}?unmask=true"), official)
            .await,
        403,
        "forbidden",
    );
    expect(
        c.get(repeat, &format!("{repeat}?last=0"), ADMIN).await,
        400,
        "invalid_query",
    );
    id
}

async fn exemptions(c: &mut Client, official: &str, people: &[(String, String)]) {
    let now = c.app.now();
    let x = "/v1/exemptions";
    let grant = |who: &str, from: i64, until: i64| {
        json!({"person_id": who, "reason": "bedridden", "from": now.plus_millis(from),
               "until": now.plus_millis(until), "note": "卧床"})
    };
    let body = expect(
        c.post(x, x, ADMIN, &grant(&people[0].0, -HOUR, HOUR)).await,
        201,
        "",
    );
    let id = body["id"].as_str().unwrap().to_owned();
    expect(
        c.post(x, x, ADMIN, &grant(&people[1].0, HOUR, -HOUR)).await,
        400,
        "invalid_window",
    );
    let outsider = people.iter().find(|p| !p.1.starts_with(A)).unwrap();
    expect(
        c.post(x, x, official, &grant(&outsider.0, -HOUR, HOUR))
            .await,
        404,
        "unknown_resident",
    );
    expect(
        c.post(x, x, ADMIN, &grant(&pid("19900101", 9), -HOUR, HOUR))
            .await,
        201,
        "",
    );
    expect(c.get(x, x, ADMIN).await, 200, "");
    expect(c.get(x, x, official).await, 200, "");
    expect(
        c.get(x, &format!("{x}?area=nowhere"), ADMIN).await,
        400,
        "unknown_area",
    );

    let import = "/v1/exemptions/import";
    let (from, until) = (now.plus_millis(-HOUR), now.plus_millis(HOUR));
    let csv = format!(
        "person_id,reason,from,until,note\n{},away,{from},{until},出差\n",
        people[2].0
    );
    expect(c.post_csv(import, ADMIN, &csv).await, 201, "");
    let bad = format!(
        "person_id,reason,from,until,note\n{},sleepy,{from},{until},\n",
        people[3].0
    );
    let body = expect(
        c.post_csv(import, ADMIN, &bad).await,
        400,
        "invalid_exemptions",
    );
    assert!(!body["lines"].as_array().unwrap().is_empty(), "{body}");

    let one = "/v1/exemptions/{id}";
    expect(c.delete(one, &format!("{x}/{id}"), ADMIN).await, 204, "");
    expect(
        c.delete(one, &format!("{x}/{id}"), ADMIN).await,
        404,
        "unknown_exemption",
    );
}

//! `/openapi.json` and `/docs` against the server: the route table
//! (`routes::ENDPOINTS`, which the server registers and the document is
//! built from), the routes the server really serves and the document must
//! all agree.

use std::collections::BTreeSet;
use std::path::Path;

use reqwest::Method;
use serde_json::Value;

use crate::helpers::*;
use rollcall::http::openapi::document;
use rollcall::http::routes::{allowed_methods, endpoints};

const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

async fn app() -> TestApp {
    spawn_with(Opts {
        redis: false,
        ..Opts::default()
    })
    .await
}

/// A concrete path for a template: ids `1`, a valid person ID, a UI file.
fn fill(template: &str) -> String {
    template
        .replace("{id}", "1")
        .replace("{person_id}", &pid("19850312", 1))
        .replace("{file}", "index.html")
}

fn method(m: &str) -> Method {
    Method::from_bytes(m.as_bytes()).unwrap()
}

/// (METHOD, path) of every operation in a document.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in item.as_object().unwrap().keys() {
            if METHODS.iter().any(|x| x.eq_ignore_ascii_case(m)) {
                out.insert((m.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

/// (method, path template) of every entry of the route table.
fn routes() -> Vec<(&'static str, &'static str)> {
    endpoints().map(|e| (e.method, e.path)).collect()
}

/// The route table with the `HEAD` the server serves beside every `GET`.
fn table() -> BTreeSet<(String, String)> {
    routes()
        .into_iter()
        .flat_map(|(m, p)| {
            let head = (m == "GET").then(|| ("HEAD".to_owned(), p.to_owned()));
            std::iter::once((m.to_owned(), p.to_owned())).chain(head)
        })
        .collect()
}

fn ext_is(file: &str, ext: &str) -> bool {
    Path::new(file)
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

/// The first string literal in `s` (no escapes needed for paths and actions).
fn first_literal(s: &str) -> Option<&str> {
    let start = s.find('"')? + 1;
    let len = s[start..].find('"')?;
    Some(&s[start..start + len])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_document_is_openapi_3_and_every_route_in_the_table_is_in_it_with_its_method() {
    let app = app().await;
    let r = app.req(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"),
        "{:?}",
        r.headers
    );
    let doc = r.json();
    assert_eq!(doc, document(), "the server serves `openapi::document()`");
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.0"),
        "{}",
        doc["openapi"]
    );
    let documented = operations(&doc);
    let missing: Vec<_> = table().difference(&documented).cloned().collect();
    assert!(missing.is_empty(), "routes the document lacks: {missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_path_of_the_document_is_in_the_route_table() {
    let documented = operations(&document());
    let table = table();
    let extra: Vec<_> = documented.difference(&table).cloned().collect();
    assert!(extra.is_empty(), "documented but not routed: {extra:?}");
    // The /v1 paths above all, by path alone too.
    for (_, p) in documented.iter().filter(|(_, p)| p.starts_with("/v1")) {
        assert!(
            routes().iter().any(|(_, q)| q == p),
            "{p} is not in the route table"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_in_the_table_is_served() {
    let app = app().await;
    for (m, template) in routes() {
        let path = fill(template);
        let r = app.req(method(m), &path, Some(ADMIN), None).await;
        assert!(
            !(r.status == 404 && r.code() == "not_found") && r.status != 405,
            "{m} {path} is not routed: {} {}",
            r.status,
            r.text()
        );
        // A 404 that is not the server's "no route" answer is the
        // contract's (unknown_round, …), in the error shape.
        if r.status == 404 {
            assert!(
                !r.code().is_empty(),
                "{m} {path}: 404 without an error code: {}",
                r.text()
            );
        }
    }
}

/// Every other method on a known path is `405 method_not_allowed`, with an
/// `Allow` header naming exactly the table's methods (and `HEAD` beside
/// `GET`); `HEAD` answers as `GET` does, without a body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_method_outside_the_route_table_is_served() {
    let app = app().await;
    let table = table();
    let paths: BTreeSet<&str> = routes().into_iter().map(|(_, p)| p).collect();
    for template in paths {
        let path = fill(template);
        let served: Vec<&str> = METHODS
            .iter()
            .copied()
            .filter(|m| table.contains(&((*m).to_owned(), template.to_owned())))
            .collect();
        let mut want_allow: Vec<&str> = served.clone();
        want_allow.sort_unstable();
        let mut allow_fn = allowed_methods(&path);
        allow_fn.sort_unstable();
        assert_eq!(allow_fn, want_allow, "allowed_methods({path})");
        for m in METHODS {
            let r = app.req(method(m), &path, Some(ADMIN), None).await;
            if served.contains(&m) {
                assert_ne!(r.status, 405, "{m} {path}");
                if m == "HEAD" {
                    let get = app.req(Method::GET, &path, Some(ADMIN), None).await;
                    assert_eq!(r.status, get.status, "HEAD {path} answers as GET");
                    assert!(r.body.is_empty(), "HEAD {path} has a body");
                }
                continue;
            }
            assert_eq!(
                r.status, 405,
                "{m} {path} is served but not in the route table"
            );
            if m != "HEAD" {
                assert_eq!(r.code(), "method_not_allowed", "{m} {path}: {}", r.text());
            }
            let mut allow: Vec<&str> = r.headers["allow"].to_str().unwrap().split(", ").collect();
            allow.sort_unstable();
            assert_eq!(allow, want_allow, "{m} {path}: Allow");
        }
    }
}

#[test]
fn allowed_methods_match_whole_segments_only() {
    assert_eq!(allowed_methods("/v1/rounds"), ["POST", "GET", "HEAD"]);
    assert_eq!(allowed_methods("/v1/rounds/7/close"), ["POST"]);
    assert!(allowed_methods("/v1/rounds//close").is_empty(), "empty id");
    assert!(allowed_methods("/v1/rounds/7/close/x").is_empty());
    assert!(allowed_methods("/v1/round").is_empty());
    assert!(allowed_methods("/v1/no-such-thing").is_empty());
    assert!(allowed_methods("/healthz/").is_empty());
    // The UI's files: `/docs/` and anything under it.
    assert_eq!(allowed_methods("/docs/"), ["GET", "HEAD"]);
    assert_eq!(allowed_methods("/docs/a/b.js"), ["GET", "HEAD"]);
    assert_eq!(allowed_methods("/docs"), ["GET", "HEAD"]);
    assert!(allowed_methods("/docsx").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swagger_ui_at_docs_is_served_from_the_binary_without_any_cdn() {
    let app = app().await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_redirects
        .get(format!("{}/docs", app.base))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection(), "GET /docs: {}", r.status());
    assert_eq!(r.headers()["location"], "/docs/");

    let r = app.req(Method::GET, "/docs/", None, None).await;
    assert_eq!(r.status, 200);
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = r.text();
    assert!(html.contains("swagger-ui"), "{html}");
    // Every script, stylesheet, icon or font the page loads is one of ours.
    let mut local = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for (k, _) in html.match_indices(attr) {
            let v = first_literal(&html[k..]).unwrap();
            assert!(
                !(v.starts_with("http:") || v.starts_with("https:") || v.starts_with("//")),
                "/docs/ loads {v} from outside"
            );
            local.push(v.trim_start_matches("./").to_owned());
        }
    }
    assert!(local.iter().any(|f| ext_is(f, "js")), "{local:?}");
    for f in &local {
        let r = app
            .req(Method::GET, &format!("/docs/{f}"), None, None)
            .await;
        assert_eq!(r.status, 200, "/docs/{f}");
        if ext_is(f, "css") {
            let css = r.text();
            for (k, _) in css.match_indices("url(") {
                let v = css[k + 4..].trim_start_matches(['"', '\'']);
                assert!(
                    v.starts_with("data:") || !v.contains("://"),
                    "{f} loads {}",
                    &v[..v.len().min(60)]
                );
            }
            assert!(!css.contains("@import"), "{f} imports another stylesheet");
        }
    }
    // The UI reads this server's document and calls no online validator.
    let init = app
        .req(Method::GET, "/docs/swagger-initializer.js", None, None)
        .await
        .text();
    assert!(init.contains("\"url\": \"/openapi.json\""), "{init}");
    assert!(init.contains("\"validatorUrl\": \"none\""), "{init}");
}

/// Every value a query parameter is documented to take gets past the
/// server's query checks (round `1` does not exist, so the answer is then
/// `404 unknown_round`), and a value just outside is `400 invalid_query`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_query_value_is_accepted_and_the_next_one_refused() {
    let app = app().await;
    let doc = document();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let Some(op) = item.get("get") else { continue };
        let Some(params) = op["parameters"].as_array() else {
            continue;
        };
        for p in params.iter().filter(|p| p["in"] == "query") {
            let name = p["name"].as_str().unwrap();
            let s = &p["schema"];
            let (good, bad): (Vec<String>, Vec<String>) = match s["type"].as_str() {
                _ if s["enum"].is_array() => (
                    s["enum"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_str().unwrap().to_owned())
                        .collect(),
                    vec!["not-a-value".to_owned()],
                ),
                Some("boolean") => (vec!["true".into(), "false".into()], vec!["yes".into()]),
                Some("integer") => {
                    let (lo, hi) = (
                        s["minimum"].as_i64().unwrap(),
                        s["maximum"].as_i64().unwrap(),
                    );
                    (
                        vec![lo.to_string(), hi.to_string()],
                        vec![(lo - 1).to_string(), (hi + 1).to_string()],
                    )
                }
                Some("string") if s["format"] == "date-time" => (
                    vec![
                        "2022-04-19T08:15:00%2B08:00".into(),
                        "2022-04-19T00:15:00Z".into(),
                    ],
                    vec!["2022-04-19T08:15:00".into()],
                ),
                _ => continue, // `area`: a path; its errors need a register.
            };
            let url = fill(path);
            for v in &good {
                let r = app.get(&format!("{url}?{name}={v}"), ADMIN).await;
                assert!(
                    r.status == 200 || r.code() == "unknown_round",
                    "{path}?{name}={v} is documented but refused: {} {}",
                    r.status,
                    r.text()
                );
                checked += 1;
            }
            for v in &bad {
                let r = app.get(&format!("{url}?{name}={v}"), ADMIN).await;
                assert_eq!(
                    (r.status, r.code().as_str()),
                    (400, "invalid_query"),
                    "{path}?{name}={v}: {}",
                    r.text()
                );
            }
        }
    }
    assert!(checked >= 10, "only {checked} values checked");
}

/// Without a token every /v1 route is `401 unauthorized`, and the document
/// says so; the operations endpoints need none, and the document says that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_says_which_routes_need_a_token() {
    let app = app().await;
    let doc = document();
    for (m, template) in routes() {
        let op = &doc["paths"][template][m.to_lowercase()];
        let r = app.req(method(m), &fill(template), None, None).await;
        if template.starts_with("/v1/") {
            assert_eq!(
                (r.status, r.code().as_str()),
                (401, "unauthorized"),
                "{m} {template}"
            );
            assert_eq!(
                op["responses"]["401"]["content"]["application/json"]["schema"]["allOf"][1]["properties"]
                    ["error"]["properties"]["code"]["enum"],
                serde_json::json!(["unauthorized"]),
                "{m} {template}"
            );
            assert!(
                op["security"].is_null(),
                "{m} {template} inherits the bearer scheme"
            );
            let roles = op["x-roles"].as_array().unwrap();
            assert!(!roles.is_empty(), "{m} {template}");
            let text = op["description"].as_str().unwrap();
            assert!(text.starts_with("**Roles:**"), "{m} {template}: {text}");
        } else {
            assert_ne!(r.status, 401, "{m} {template}");
            assert_eq!(op["security"], serde_json::json!([]), "{m} {template}");
        }
    }
}

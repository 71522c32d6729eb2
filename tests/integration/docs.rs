//! The repository documents its own API: `docs/openapi.json` is the document
//! the server serves, committed so it can be read (and diffed in review)
//! without running anything. When the API changes, regenerate it with
//!
//!     ROLLCALL_WRITE_DOCS=1 cargo test --test integration committed_openapi
//!
//! and commit the result; otherwise this test fails, naming the first
//! difference.

use std::path::Path;

use rollcall::http::openapi::document;
use serde_json::Value;

/// The first JSON pointer at which `a` and `b` differ, if any.
fn first_difference(a: &Value, b: &Value, at: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys()) {
                let here = format!("{at}/{k}");
                match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) => {
                        if let Some(d) = first_difference(p, q, &here) {
                            return Some(d);
                        }
                    }
                    _ => return Some(here),
                }
            }
            None
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return Some(format!("{at} (length {} vs {})", x.len(), y.len()));
            }
            x.iter()
                .zip(y)
                .enumerate()
                .find_map(|(i, (p, q))| first_difference(p, q, &format!("{at}/{i}")))
        }
        _ => (a != b).then(|| at.to_owned()),
    }
}

#[test]
fn committed_openapi_json_is_the_served_document() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
    let served = document();
    if std::env::var_os("ROLLCALL_WRITE_DOCS").is_some() {
        let mut text = serde_json::to_string_pretty(&served).unwrap();
        text.push('\n');
        std::fs::write(&path, text).unwrap();
    }
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(&path).expect("docs/openapi.json is committed"),
    )
    .expect("docs/openapi.json is JSON");
    assert!(
        committed == served,
        "docs/openapi.json is out of date at {}: regenerate it with \
         `ROLLCALL_WRITE_DOCS=1 cargo test --test integration committed_openapi`",
        first_difference(&committed, &served, "").unwrap_or_default()
    );
}

//! The typed batch parser against the rules it replaced, which read the
//! body into a `serde_json::Value` tree first: the same code and message
//! for every body and every item, whatever the order or the repeats of
//! their keys.

use serde_json::{Map, Value};

use super::*;

/// The former reading of a body, kept here as the reference.
fn reference_body(body: &[u8], key: &str) -> Result<Vec<Value>, (Code, String)> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        (
            Code::MalformedJson,
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    let Value::Object(mut map) = v else {
        return Err((
            Code::InvalidField,
            format!("the body must be an object holding `{key}`"),
        ));
    };
    if let Some(k) = map.keys().find(|k| k.as_str() != key) {
        return Err((Code::UnknownField, format!("unknown field `{k}`")));
    }
    let Some(Value::Array(items)) = map.remove(key) else {
        return Err((Code::InvalidField, format!("`{key}` must be an array")));
    };
    if items.is_empty() {
        return Err((Code::EmptyBatch, format!("`{key}` is empty")));
    }
    if items.len() > MAX_BATCH {
        return Err((
            Code::BatchTooLarge,
            format!("at most {MAX_BATCH} items per batch, got {}", items.len()),
        ));
    }
    Ok(items)
}

/// The former field check of one item.
fn reference_item<'a>(
    item: &'a Value,
    required: &[&str],
) -> Result<Vec<&'a str>, (ItemCode, String)> {
    let Value::Object(m) = item else {
        return Err((ItemCode::InvalidField, "the item must be an object".into()));
    };
    let m: &Map<String, Value> = m;
    if let Some(k) = m.keys().find(|k| !required.contains(&k.as_str())) {
        return Err((ItemCode::UnknownField, format!("unknown field `{k}`")));
    }
    let mut out = Vec::new();
    for k in required {
        match m.get(*k) {
            Some(Value::String(s)) => out.push(s.as_str()),
            _ => return Err((ItemCode::InvalidField, format!("`{k}` must be a string"))),
        }
    }
    Ok(out)
}

const NAMES: &[&str] = &["person_id", "tube_id", "collected_at", "site"];

fn same(body: &str) {
    let want = reference_body(body.as_bytes(), "records");
    let got = batch_items(body.as_bytes(), "records", NAMES);
    match (&want, &got) {
        (Err((code, msg)), Err(e)) => {
            assert_eq!(
                (*code, msg.as_str()),
                (e.code, e.message.as_str()),
                "{body}"
            );
        }
        (Ok(want), Ok(got)) => {
            assert_eq!(want.len(), got.len(), "{body}");
            for required in [3, 4] {
                for (w, g) in want.iter().zip(got) {
                    let w = reference_item(w, &NAMES[..required]);
                    let g = g.check(NAMES, required).map(|a| a[..required].to_vec());
                    assert_eq!(w, g, "{body} (required {required})");
                }
            }
        }
        _ => panic!(
            "{body}: reference {want:?}, typed {:?}",
            got.map(|v| v.len())
        ),
    }
}

#[test]
fn bodies_get_the_same_codes_and_messages_as_a_json_tree_gave() {
    for body in [
        "",
        "{",
        "[1]",
        "\"records\"",
        "null",
        "5",
        "{}",
        r#"{"records": null}"#,
        r#"{"records": {"a": [1, {}]}}"#,
        r#"{"records": "x"}"#,
        r#"{"records": []}"#,
        r#"{"records": [], "zeta": 1, "alpha": {"x": [1]}}"#,
        r#"{"zeta": 1, "records": [{}]}"#,
        r#"{"records": 1, "records": [{}]}"#,
        r#"{"records": [{}], "records": 1}"#,
        r#"{"records": [{}]} x"#,
        r#"{"records": [{}],}"#,
        r#"{"rec\u006frds": [{}]}"#,
    ] {
        same(body);
    }
}

#[test]
fn items_get_the_same_codes_and_messages_as_a_json_tree_gave() {
    let good = r#""person_id": "61080219850312001X", "tube_id": "T-1", "collected_at": "2022-04-15T09:02:00+08:00""#;
    for item in [
        format!("{{{good}}}"),
        format!(r#"{{{good}, "site": "S01"}}"#),
        format!(r#"{{"site": "S01", {good}, "aardvark": 1}}"#),
        format!(r#"{{{good}, "zz": null, "site": 5}}"#),
        format!(r#"{{{good}, "tube_id": 7}}"#),
        format!(r#"{{"tube_id": 7, {good}}}"#),
        format!(r#"{{{good}, "site": null}}"#),
        format!(r#"{{{good}, "site": "S\u0030\n1"}}"#),
        format!(r#"{{{good}, "s\u0069te": "S01"}}"#),
        r#"{"person_id": ["a"], "tube_id": {"b": 1}}"#.to_owned(),
        r#"{"collected_at": "x"}"#.to_owned(),
        "[]".to_owned(),
        "[{}]".to_owned(),
        "\"a\"".to_owned(),
        "null".to_owned(),
        "true".to_owned(),
        "-1.5e3".to_owned(),
        "{}".to_owned(),
    ] {
        same(&format!(r#"{{"records": [{item}, {item}]}}"#));
    }
}

#[test]
fn a_batch_past_the_limit_is_refused_as_before() {
    let body = format!(r#"{{"records": [{}{{}}]}}"#, "{},".repeat(MAX_BATCH));
    same(&body);
    let e = batch_items(body.as_bytes(), "records", NAMES).unwrap_err();
    assert_eq!(e.code, Code::BatchTooLarge);
}

#[test]
fn fields_are_borrowed_from_the_body_unless_they_held_escapes() {
    let body = br#"{"records": [{"tube_id": "T-1", "site": "S\u00301"}]}"#;
    let items = batch_items(body, "records", NAMES).unwrap();
    assert!(matches!(
        items[0].fields[1],
        Some(Field::Str(Cow::Borrowed("T-1")))
    ));
    assert!(matches!(&items[0].fields[3], Some(Field::Str(Cow::Owned(s))) if s == "S01"));
}

//! `POST /v1/records`: sample-collection records from scanners (and admins).
//! Each record is judged alone, in batch order; the answer comes only after
//! the accepted ones are durable.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, post, web};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::domain::{PersonId, Role, Timestamp, TubeId};
use crate::engine::{RecordItem, RejectCode, Verdict};
use crate::http::AppState;
use crate::http::auth::Principal;
use crate::http::body;
use crate::http::error::{ApiError, Code, ItemCode};

/// The most items one batch may hold.
pub const MAX_BATCH: usize = 10_000;

/// One refused item of a batch.
#[derive(Serialize, Debug)]
pub struct Rejected {
    pub index: usize,
    pub code: ItemCode,
    pub message: String,
}

impl Rejected {
    pub fn new(index: usize, code: ItemCode, message: impl Into<String>) -> Rejected {
        Rejected {
            index,
            code,
            message: message.into(),
        }
    }
}

/// The items of a batch body `{"<key>": [...]}`, under the contract's rules.
pub fn batch_items(v: Value, key: &str) -> Result<Vec<Value>, ApiError> {
    let Value::Object(mut map) = v else {
        return Err(ApiError::new(
            Code::InvalidField,
            format!("the body must be an object holding `{key}`"),
        ));
    };
    if let Some(k) = map.keys().find(|k| k.as_str() != key) {
        return Err(ApiError::new(
            Code::UnknownField,
            format!("unknown field `{k}`"),
        ));
    }
    let Some(Value::Array(items)) = map.remove(key) else {
        return Err(ApiError::new(
            Code::InvalidField,
            format!("`{key}` must be an array"),
        ));
    };
    if items.is_empty() {
        return Err(ApiError::new(Code::EmptyBatch, format!("`{key}` is empty")));
    }
    if items.len() > MAX_BATCH {
        return Err(ApiError::new(
            Code::BatchTooLarge,
            format!("at most {MAX_BATCH} items per batch, got {}", items.len()),
        ));
    }
    Ok(items)
}

/// The field check of one item: an object whose keys are all known and
/// whose required fields are strings. Unknown keys are reported first.
pub fn item_fields<'a>(
    item: &'a Value,
    required: &[&str],
    optional: &[&str],
) -> Result<&'a Map<String, Value>, (ItemCode, String)> {
    let Value::Object(m) = item else {
        return Err((ItemCode::InvalidField, "the item must be an object".into()));
    };
    if let Some(k) = m
        .keys()
        .find(|k| !required.contains(&k.as_str()) && !optional.contains(&k.as_str()))
    {
        return Err((ItemCode::UnknownField, format!("unknown field `{k}`")));
    }
    for k in required.iter().chain(optional) {
        let present = m.get(*k);
        let must = required.contains(k);
        match present {
            Some(Value::String(_)) => {}
            None if !must => {}
            _ => return Err((ItemCode::InvalidField, format!("`{k}` must be a string"))),
        }
    }
    Ok(m)
}

fn s<'a>(m: &'a Map<String, Value>, k: &str) -> &'a str {
    m.get(k).and_then(Value::as_str).unwrap_or_default()
}

pub fn parse_record(
    item: &Value,
    site: Option<&Arc<str>>,
) -> Result<RecordItem, (ItemCode, String)> {
    // An admin's record names its site; a scanner's must not (its token does).
    let required: &[&str] = if site.is_none() {
        &["person_id", "tube_id", "collected_at", "site"]
    } else {
        &["person_id", "tube_id", "collected_at"]
    };
    let m = item_fields(item, required, &[])?;
    let person_id: PersonId = s(m, "person_id")
        .parse()
        .map_err(|e| (ItemCode::InvalidPersonId, format!("{e}")))?;
    let tube_id: TubeId = s(m, "tube_id")
        .parse()
        .map_err(|e| (ItemCode::InvalidTubeId, format!("{e}")))?;
    let collected_at = Timestamp::parse(s(m, "collected_at"))
        .map_err(|e| (ItemCode::InvalidTime, format!("collected_at: {e}")))?;
    let site = match site {
        Some(s) => s.clone(),
        None => {
            let v = s(m, "site");
            if v.is_empty() || v.chars().count() > 64 {
                return Err((
                    ItemCode::InvalidField,
                    "`site` must be 1 to 64 characters".into(),
                ));
            }
            Arc::from(v)
        }
    };
    Ok(RecordItem {
        person_id,
        tube_id,
        collected_at,
        site,
    })
}

/// Counts a batch's verdicts — `(accepted, duplicates, flagged)` — and adds
/// the engine's rejections to `rejected` (then sorted by index). `good_index`
/// maps each verdict back to its item's index in the batch.
pub fn tally(
    verdicts: &[Verdict],
    good_index: &[usize],
    rejected: &mut Vec<Rejected>,
) -> (u64, u64, u64) {
    let (mut accepted, mut duplicates, mut flagged) = (0u64, 0u64, 0u64);
    for (v, &i) in verdicts.iter().zip(good_index) {
        match v {
            Verdict::Accepted { flag } => {
                accepted += 1;
                flagged += u64::from(*flag);
            }
            Verdict::Duplicate => duplicates += 1,
            Verdict::Rejected(c) => {
                let (code, msg) = reject(*c);
                rejected.push(Rejected::new(i, code, msg));
            }
        }
    }
    rejected.sort_by_key(|r| r.index);
    (accepted, duplicates, flagged)
}

/// The message for an engine verdict's code.
pub fn reject(code: RejectCode) -> (ItemCode, &'static str) {
    match code {
        RejectCode::InvalidTime => (
            ItemCode::InvalidTime,
            "more than 5 minutes in the future or older than 30 days",
        ),
        RejectCode::TubeFull => (
            ItemCode::TubeFull,
            "the tube already holds the pool maximum",
        ),
        RejectCode::TubeSiteConflict => (
            ItemCode::TubeSiteConflict,
            "the tube was first used at another site",
        ),
        RejectCode::ConflictingResult => (
            ItemCode::ConflictingResult,
            "the tube already has a different result",
        ),
    }
}

#[post("/v1/records")]
pub async fn post(
    state: web::Data<AppState>,
    who: Principal,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    who.require(&[Role::Scanner, Role::Admin])?;
    let items = batch_items(body::json(&req, payload).await?, "records")?;
    let site = if who.role == Role::Scanner {
        Some(
            who.site
                .clone()
                .ok_or_else(|| ApiError::internal(&"scanner token without a site"))?,
        )
    } else {
        None
    };
    let mut rejected = Vec::new();
    let mut good = Vec::with_capacity(items.len());
    let mut good_index = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match parse_record(item, site.as_ref()) {
            Ok(r) => {
                good.push(r);
                good_index.push(i);
            }
            Err((code, msg)) => rejected.push(Rejected::new(i, code, msg)),
        }
    }
    let _w = state.admit_write()?;
    let out = if good.is_empty() {
        None
    } else {
        Some(state.store.records(good).await?)
    };
    let verdicts = out.map(|o| o.verdicts).unwrap_or_default();
    let (accepted, duplicates, unregistered) = tally(&verdicts, &good_index, &mut rejected);
    metrics::counter!("rollcall_records_total", "outcome" => "accepted").increment(accepted);
    metrics::counter!("rollcall_records_total", "outcome" => "duplicate").increment(duplicates);
    for r in &rejected {
        metrics::counter!("rollcall_records_total", "outcome" => "rejected", "code" => r.code.as_str())
            .increment(1);
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "accepted": accepted,
        "duplicates": duplicates,
        "unregistered": unregistered,
        "rejected": rejected,
    })))
}

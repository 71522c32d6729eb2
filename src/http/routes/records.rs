//! `POST /v1/records`: sample-collection records from scanners (and admins).
//! Each record is judged alone, in batch order; the answer comes only after
//! the accepted ones are durable.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};

use crate::domain::{PersonId, Role, Timestamp, TubeId};
use crate::engine::RecordItem;
use crate::http::AppState;
use crate::http::auth::Principal;
use crate::http::body;
use crate::http::error::{ApiError, ItemCode};
use crate::http::openapi::build::{
    Op, closed_object, codes_list, count, json_body, json_response, object, r, time,
};
use crate::http::routes::Endpoint;
use crate::http::routes::batch::{self, MAX_BATCH};
use crate::http::routes::batch::{Item, Split, batch_items, split, tally};
use serde_json::{Value, json};

/// The fields a record may name, in the order their problems are reported;
/// `site` only in an admin's record.
const NAMES: &[&str] = &["person_id", "tube_id", "collected_at", "site"];

pub fn parse_record(
    item: &Item<'_>,
    site: Option<&Arc<str>>,
) -> Result<RecordItem, (ItemCode, String)> {
    // An admin's record names its site; a scanner's must not (its token does).
    let required = if site.is_none() { 4 } else { 3 };
    let [person_id, tube_id, collected_at, named_site] = item.check(NAMES, required)?;
    let person_id: PersonId = person_id
        .parse()
        .map_err(|e| (ItemCode::InvalidPersonId, format!("{e}")))?;
    let tube_id: TubeId = tube_id
        .parse()
        .map_err(|e| (ItemCode::InvalidTubeId, format!("{e}")))?;
    let collected_at = Timestamp::parse(collected_at)
        .map_err(|e| (ItemCode::InvalidTime, format!("collected_at: {e}")))?;
    let site = match site {
        Some(s) => s.clone(),
        None => {
            let v = named_site;
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

pub async fn post(
    state: web::Data<AppState>,
    who: Principal,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    who.require(POST.roles)?;
    let body = body::json_bytes(&req, payload).await?;
    let items = batch_items(&body, "records", NAMES)?;
    let site = if who.role == Role::Scanner {
        Some(
            who.site
                .clone()
                .ok_or_else(|| ApiError::internal(&"scanner token without a site"))?,
        )
    } else {
        None
    };
    let Split {
        good,
        good_index,
        mut rejected,
    } = split(&items, |item| parse_record(item, site.as_ref()));
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

// ---------------------------------------------------------------------------
// This file's endpoints: the route table's entries and their OpenAPI operations.
// ---------------------------------------------------------------------------

/// `POST /v1/records`: upload sample-collection records.
pub const POST: Endpoint = Endpoint::new(
    "POST",
    "/v1/records",
    &[Role::Scanner, Role::Admin],
    || web::route().to(post),
    post_records_doc,
);

fn post_records_doc() -> Op {
    let batch_rules = batch::doc_rules();
    let batch_errors = batch::doc_errors();
    Op::new("postRecords", "records", "Upload sample-collection records")
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
        .errors(&batch_errors)
}

/// The per-item codes its operation lists.
const RECORD_ITEM_CODES: [ItemCode; 7] = [
    ItemCode::InvalidField,
    ItemCode::UnknownField,
    ItemCode::InvalidPersonId,
    ItemCode::InvalidTubeId,
    ItemCode::InvalidTime,
    ItemCode::TubeFull,
    ItemCode::TubeSiteConflict,
];

/// The schemas this file's operations name.
pub(crate) fn schemas() -> Vec<(&'static str, Value)> {
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
                    ("rejected", rejected),
                ],
            ),
        ),
    ]
}

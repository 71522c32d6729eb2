//! `POST /v1/records`: sample-collection records from scanners (and admins).
//! Each record is judged alone, in batch order; the answer comes only after
//! the accepted ones are durable.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, post, web};

use crate::domain::{PersonId, Role, Timestamp, TubeId};
use crate::engine::RecordItem;
use crate::http::AppState;
use crate::http::auth::Principal;
use crate::http::body;
use crate::http::error::{ApiError, ItemCode};
use crate::http::routes::batch::{Item, Split, batch_items, split, tally};

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

#[post("/v1/records")]
pub async fn post(
    state: web::Data<AppState>,
    who: Principal,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    who.require(&[Role::Scanner, Role::Admin])?;
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

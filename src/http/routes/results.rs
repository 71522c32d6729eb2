//! `POST /v1/results`: lab results per tube (lab, admin).

use actix_web::{HttpRequest, HttpResponse, post, web};

use crate::domain::{Role, TestResult, Timestamp, TubeId};
use crate::engine::ResultItem;
use crate::http::AppState;
use crate::http::auth::Principal;
use crate::http::body;
use crate::http::error::{ApiError, ItemCode};
use crate::http::routes::batch::{Item, Split, batch_items, split, tally};

/// The fields a result names, in the order their problems are reported.
const NAMES: &[&str] = &["tube_id", "result", "reported_at"];

pub fn parse_result(item: &Item<'_>) -> Result<ResultItem, (ItemCode, String)> {
    let [tube_id, result, reported_at, _] = item.check(NAMES, NAMES.len())?;
    let tube_id: TubeId = tube_id
        .parse()
        .map_err(|e| (ItemCode::InvalidTubeId, format!("{e}")))?;
    let result: TestResult = result.parse().map_err(|_| {
        (
            ItemCode::InvalidResult,
            "`result` must be negative or positive".to_owned(),
        )
    })?;
    let reported_at = Timestamp::parse(reported_at)
        .map_err(|e| (ItemCode::InvalidTime, format!("reported_at: {e}")))?;
    Ok(ResultItem {
        tube_id,
        result,
        reported_at,
    })
}

#[post("/v1/results")]
pub async fn post(
    state: web::Data<AppState>,
    who: Principal,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    who.require(&[Role::Lab, Role::Admin])?;
    let body = body::json_bytes(&req, payload).await?;
    let items = batch_items(&body, "results", NAMES)?;
    let Split {
        good,
        good_index,
        mut rejected,
    } = split(&items, parse_result);
    let _w = state.admit_write()?;
    let verdicts = if good.is_empty() {
        Vec::new()
    } else {
        state.store.results(good).await?.verdicts
    };
    let (accepted, duplicates, unmatched) = tally(&verdicts, &good_index, &mut rejected);
    metrics::counter!("rollcall_results_total", "outcome" => "accepted").increment(accepted);
    metrics::counter!("rollcall_results_total", "outcome" => "duplicate").increment(duplicates);
    metrics::counter!("rollcall_results_total", "outcome" => "rejected")
        .increment(rejected.len() as u64);
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "accepted": accepted,
        "duplicates": duplicates,
        "unmatched": unmatched,
        "rejected": rejected,
    })))
}

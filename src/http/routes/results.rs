//! `POST /v1/results`: lab results per tube (lab, admin).

use actix_web::{HttpRequest, HttpResponse, web};

use crate::domain::{Role, TestResult, Timestamp, TubeId};
use crate::engine::ResultItem;
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

pub async fn post(
    state: web::Data<AppState>,
    who: Principal,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    who.require(POST.roles)?;
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

// ---------------------------------------------------------------------------
// This file's endpoints: the route table's entries and their OpenAPI operations.
// ---------------------------------------------------------------------------

/// `POST /v1/results`: upload lab results.
pub const POST: Endpoint = Endpoint::new(
    "POST",
    "/v1/results",
    &[Role::Lab, Role::Admin],
    || web::route().to(post),
    post_results_doc,
);

fn post_results_doc() -> Op {
    let batch_rules = batch::doc_rules();
    let batch_errors = batch::doc_errors();
    Op::new("postResults", "results", "Upload lab results")
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
        .errors(&batch_errors)
}

/// The per-item codes its operation lists.
const RESULT_ITEM_CODES: [ItemCode; 6] = [
    ItemCode::InvalidField,
    ItemCode::UnknownField,
    ItemCode::InvalidTubeId,
    ItemCode::InvalidResult,
    ItemCode::InvalidTime,
    ItemCode::ConflictingResult,
];

/// The schemas this file's operations name.
pub(crate) fn schemas() -> Vec<(&'static str, Value)> {
    let rejected = json!({ "type": "array", "items": r("Rejected") });
    vec![
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

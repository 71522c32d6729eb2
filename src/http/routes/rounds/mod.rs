//! `/v1/rounds…`: create, list, read and close rounds; the officials' views
//! of a round — missing lists (JSON, CSV, XLSX, grouped by head), coverage
//! and progress.

use crate::domain::AuditAction;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use crate::domain::{AreaPath, Role, Timestamp};
use crate::engine::{Command, Counts, CoverageNode, Engine, Round};
use crate::http::auth::Principal;
use crate::http::body::{self, Fields};
use crate::http::error::{ApiError, Code, Denial};
use crate::http::openapi::build::{
    JSON_BODY_ERRORS, NOT_BLANK, Op, WRITE_ERRORS, area_query, closed_object, count, enum_of,
    json_body, json_response, object, query_param, r, round_id_param, string, time,
};
use crate::http::routes::Endpoint;
use crate::http::{AppState, routes::audit::record};

pub mod export;
pub mod messages;
pub mod missing;

fn parse_round_id(s: &str) -> Result<u32, ApiError> {
    s.parse::<u32>()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| ApiError::new(Code::UnknownRound, "no such round"))
}

/// The round object of the contract, with the whole round's counts.
pub fn round_json(e: &Engine, r: &Round, now: Timestamp) -> Value {
    let c = e.counts(r, None);
    let id = r.id.to_string();
    metrics::gauge!("rollcall_round_in_scope", "round" => id.clone()).set(c.in_scope as f64);
    metrics::gauge!("rollcall_round_sampled", "round" => id.clone()).set(c.sampled as f64);
    metrics::gauge!("rollcall_round_missing", "round" => id).set(c.missing as f64);
    round_body(e, r, c, now)
}

/// The round object as `who` may see it: an official's counts are over the
/// part of the round inside their area, never beyond it.
fn round_json_for(e: &Engine, r: &Round, who_area: Option<&AreaPath>, now: Timestamp) -> Value {
    match who_area {
        Some(a) if !Engine::round_inside(r, a) => round_body(e, r, e.counts_within(r, a), now),
        _ => round_json(e, r, now),
    }
}

fn round_body(e: &Engine, r: &Round, c: Counts, now: Timestamp) -> Value {
    json!({
        "id": r.id.to_string(),
        "name": r.name,
        "scope": r.scope.iter().map(AreaPath::as_str).collect::<Vec<_>>(),
        "opens_at": r.opens_at,
        "deadline": r.deadline,
        "state": e.round_state(r, now),
        "closed_at": r.closed_at,
        "counts": c,
    })
}

/// An official may manage a round only when its whole scope lies inside
/// their area, and read one whose scope overlaps it.
fn require_round(who: &Principal, r: &Round, manage: bool) -> Result<(), ApiError> {
    let fits = |a: &AreaPath| {
        if manage {
            Engine::round_inside(r, a)
        } else {
            Engine::round_overlaps(r, a)
        }
    };
    match (&who.role, &who.area) {
        (Role::Admin, _) => Ok(()),
        (Role::Official, Some(a)) if fits(a) => Ok(()),
        _ => Err(ApiError::new(
            Code::OutOfScope,
            if manage {
                "this round's scope is not inside this token's area"
            } else {
                "this round's scope does not overlap this token's area"
            },
        )
        .denied(Denial {
            round_id: Some(r.id.to_string()),
            ..Denial::default()
        })),
    }
}

pub async fn create(
    state: web::Data<AppState>,
    who: Principal,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    who.require(CREATE.roles)?;
    let mut f = Fields::object(body::json(&req, payload).await?)?;
    f.check_known(&["name", "scope", "opens_at", "deadline"])?;
    let name = f.str("name")?;
    if name.chars().count() > 200 {
        return Err(ApiError::new(
            Code::InvalidField,
            "`name` is over 200 characters",
        ));
    }
    let scope = f.areas("scope")?;
    let opens_at = f.time("opens_at")?;
    let deadline = f.time("deadline")?;
    f.finish()?;
    if deadline <= opens_at {
        return Err(ApiError::new(
            Code::InvalidWindow,
            "`deadline` must be after `opens_at`",
        ));
    }
    for p in &scope {
        who.require_area(p)?;
    }
    let _w = state.admit_write()?;
    let out = state
        .store
        .command(Command::RoundCreate {
            name,
            scope: scope.clone(),
            opens_at,
            deadline,
        })
        .await?;
    let crate::engine::Prepared::RoundId(id) = out.prepared else {
        return Err(ApiError::internal(&"round create returned no id"));
    };
    let now = state.now();
    let body = state
        .read(move |e| e.round(id).map(|r| round_json(e, r, now)))
        .await?
        .ok_or_else(|| ApiError::internal(&"created round missing"))?;
    let area = scope.first().map(ToString::to_string);
    record(
        &state,
        &who,
        AuditAction::RoundCreate,
        area,
        Some(id.to_string()),
        None,
    )
    .await?;
    Ok(HttpResponse::Created().json(body))
}

pub async fn list(state: web::Data<AppState>, who: Principal) -> Result<HttpResponse, ApiError> {
    who.require(LIST.roles)?;
    // An official's view is cut to their area; an admin's is whole.
    let area = (!who.is_admin()).then(|| who.area.clone());
    let now = state.now();
    let rounds = state
        .read(move |e| {
            let mut rs: Vec<&Round> = e
                .rounds()
                .iter()
                .filter(|r| match &area {
                    None => true,
                    Some(a) => a.as_ref().is_some_and(|a| Engine::round_overlaps(r, a)),
                })
                .collect();
            rs.sort_by_key(|r| (r.opens_at, r.id));
            let mine = area.flatten();
            rs.into_iter()
                .map(|r| round_json_for(e, r, mine.as_ref(), now))
                .collect::<Vec<_>>()
        })
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "rounds": rounds })))
}

pub async fn get(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    who.require(GET.roles)?;
    let id = parse_round_id(&id)?;
    let area = (!who.is_admin()).then(|| who.area.clone()).flatten();
    let now = state.now();
    let (round, body) = state
        .read(move |e| {
            e.round(id)
                .map(|r| (r.clone_header(), round_json_for(e, r, area.as_ref(), now)))
        })
        .await?
        .ok_or_else(|| ApiError::new(Code::UnknownRound, "no such round"))?;
    require_round(&who, &round, false)?;
    Ok(HttpResponse::Ok().json(body))
}

pub async fn close(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    who.require(CLOSE.roles)?;
    let id = parse_round_id(&id)?;
    let round = state
        .read(move |e| e.round(id).map(Round::clone_header))
        .await?
        .ok_or_else(|| ApiError::new(Code::UnknownRound, "no such round"))?;
    require_round(&who, &round, true)?;
    let _w = state.admit_write()?;
    let out = state
        .store
        .command(Command::RoundClose { id, at: None })
        .await?;
    // The close answers once its flips are written to the status cache.
    state.cache.flushed(out.ticket).await;
    let now = state.now();
    let body = state
        .read(move |e| e.round(id).map(|r| round_json(e, r, now)))
        .await?
        .ok_or_else(|| ApiError::internal(&"closed round missing"))?;
    let area = round.scope.first().map(ToString::to_string);
    record(
        &state,
        &who,
        AuditAction::RoundClose,
        area,
        Some(id.to_string()),
        Some(out.applied.flipped),
    )
    .await?;
    Ok(HttpResponse::Ok().json(json!({"round": body, "flipped": out.applied.flipped})))
}

/// The `area` of an official's view: given (inside their area) or their
/// own; for an admin, given or none (the whole round).
pub fn view_area<S: std::hash::BuildHasher>(
    who: &Principal,
    q: &std::collections::HashMap<String, String, S>,
) -> Result<Option<AreaPath>, ApiError> {
    let area = match q.get("area") {
        Some(a) => Some(
            a.parse::<AreaPath>()
                .map_err(|e| ApiError::new(Code::InvalidQuery, format!("`area`: {e}")))?,
        ),
        None => None,
    };
    match (&who.role, area) {
        (Role::Official, None) => Ok(who.area.clone()),
        (_, Some(a)) => {
            who.require_area(&a)?;
            Ok(Some(a))
        }
        (_, None) => Ok(None),
    }
}

/// Resolves a round and an area node for a view, with the contract's errors.
pub fn resolve(
    e: &Engine,
    id: u32,
    area: Option<&AreaPath>,
) -> Result<(u32, Option<u32>), ApiError> {
    e.round(id)
        .ok_or_else(|| ApiError::new(Code::UnknownRound, "no such round"))?;
    Ok((id, area_node(e, area)?))
}

/// The register's node for a view's area (`None`: no area, the whole
/// city); an area not in the register is `400 unknown_area`.
pub fn area_node(e: &Engine, area: Option<&AreaPath>) -> Result<Option<u32>, ApiError> {
    match area {
        Some(a) => Ok(Some(
            e.register()
                .node(a)
                .filter(|_| e.register().area_exists(a))
                .ok_or_else(|| {
                    ApiError::new(Code::UnknownArea, format!("{a} is not in the register"))
                })?,
        )),
        None => Ok(None),
    }
}

fn coverage_json(n: &CoverageNode) -> Value {
    let c = &n.counts;
    json!({
        "area": n.area.as_str(),
        "in_scope": c.in_scope,
        "sampled": c.sampled,
        "late": c.late,
        "made_up": c.made_up,
        "exempt": c.exempt,
        "missing": c.missing,
        "children": n.children.iter().map(coverage_json).collect::<Vec<_>>(),
    })
}

pub async fn coverage(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    who.require(COVERAGE.roles)?;
    let id = parse_round_id(&id)?;
    let q = body::query(&req, &["area", "depth"])?;
    let depth = match q.get("depth") {
        Some(d) => d
            .parse::<u32>()
            .ok()
            .filter(|&d| d <= COVERAGE_MAX_DEPTH)
            .ok_or_else(|| {
                ApiError::new(
                    Code::InvalidQuery,
                    "`depth` must be a whole number from 0 to 32",
                )
            })?,
        None => 1,
    };
    let area = view_area(&who, &q)?;
    let _admitted = state.admit_heavy_read()?;
    let body = state
        .read(move |e| -> Result<Value, ApiError> {
            let (id, node) = resolve(e, id, area.as_ref())?;
            let round = e.round(id).expect("resolved");
            let node = match node {
                Some(n) => n,
                None => e.scope_root(round).ok_or_else(|| {
                    ApiError::new(
                        Code::UnknownArea,
                        "the round's scope is not in the register",
                    )
                })?,
            };
            Ok(coverage_json(&e.coverage(round, node, depth)))
        })
        .await??;
    Ok(HttpResponse::Ok().json(body))
}

pub async fn progress(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    who.require(PROGRESS.roles)?;
    let id = parse_round_id(&id)?;
    let q = body::query(&req, &["area"])?;
    let area = view_area(&who, &q)?;
    let now = state.now();
    let body = state
        .read(move |e| -> Result<Value, ApiError> {
            let (id, node) = resolve(e, id, area.as_ref())?;
            let round = e.round(id).expect("resolved");
            if e.is_archived(round, now) {
                return Err(ApiError::new(
                    Code::RoundArchived,
                    "this round is archived: its progress is no longer kept",
                ));
            }
            let buckets: Vec<Value> = e
                .progress(round, node, now)
                .into_iter()
                .map(|(h, n)| json!({"hour": h, "sampled": n}))
                .collect();
            Ok(json!({
                "round_id": id.to_string(),
                "area": area.as_ref().map(AreaPath::as_str),
                "buckets": buckets,
            }))
        })
        .await??;
    Ok(HttpResponse::Ok().json(body))
}

// ---------------------------------------------------------------------------
// This file's endpoints: the route table's entries and their OpenAPI operations.
// ---------------------------------------------------------------------------

/// `POST /v1/rounds`: create a round.
pub const CREATE: Endpoint = Endpoint::new(
    "POST",
    "/v1/rounds",
    &[Role::Admin, Role::Official],
    || web::route().to(create),
    create_round_doc,
);

/// `GET /v1/rounds`: list rounds.
pub const LIST: Endpoint = Endpoint::new(
    "GET",
    "/v1/rounds",
    &[Role::Admin, Role::Official],
    || web::route().to(list),
    list_rounds_doc,
);

/// `GET /v1/rounds/{id}`: read a round.
pub const GET: Endpoint = Endpoint::new(
    "GET",
    "/v1/rounds/{id}",
    &[Role::Admin, Role::Official],
    || web::route().to(get),
    get_round_doc,
);

/// `POST /v1/rounds/{id}/close`: close a round now.
pub const CLOSE: Endpoint = Endpoint::new(
    "POST",
    "/v1/rounds/{id}/close",
    &[Role::Admin, Role::Official],
    || web::route().to(close),
    close_round_doc,
);

/// `GET /v1/rounds/{id}/coverage`: coverage by area.
pub const COVERAGE: Endpoint = Endpoint::new(
    "GET",
    "/v1/rounds/{id}/coverage",
    &[Role::Admin, Role::Official],
    || web::route().to(coverage),
    coverage_doc,
);

/// `GET /v1/rounds/{id}/progress`: samples by hour.
pub const PROGRESS: Endpoint = Endpoint::new(
    "GET",
    "/v1/rounds/{id}/progress",
    &[Role::Admin, Role::Official],
    || web::route().to(progress),
    progress_doc,
);

fn create_round_doc() -> Op {
    Op::new("createRound", "rounds", "Create a round")
        .notes(
            "`deadline` must be after `opens_at` (`400 invalid_window`). A scope entry that is not a \
             valid area path, or not in the register, is `400 unknown_area`; a non-string entry or \
             an empty `scope` is `400 invalid_field`; for an official every path must lie inside \
             its area (`403 out_of_scope`). `name` is 1–200 characters. \
             A round closes by itself at its deadline. Audited (`round_create`).",
        )
        .body(json_body(
            r("RoundRequest"),
            &json!({"name": "第3轮全员核酸", "scope": ["崇文路街道/学院社区"], "opens_at": "2022-04-19T06:00:00+08:00", "deadline": "2022-04-19T22:00:00+08:00"}),
        ))
        .ok(201, json_response("The new round.", r("Round")))
        .errors(
            &[
                &JSON_BODY_ERRORS[..],
                &[
                    Code::UnknownField,
                    Code::InvalidField,
                    Code::InvalidTime,
                    Code::InvalidWindow,
                    Code::UnknownArea,
                    Code::OutOfScope,
                ],
                &WRITE_ERRORS[..],
            ]
            .concat(),
        )
}

fn list_rounds_doc() -> Op {
    Op::new("listRounds", "rounds", "List rounds")
        .notes(
            "Sorted by `opens_at`, then id. An admin sees every round with its whole counts; an \
             official the rounds whose scope overlaps its area (lies inside it, or holds it), \
             every count taken over the part of the round inside its area (the numbers of \
             `coverage` of its area at `depth=0`).",
        )
        .ok(200, json_response("The rounds.", r("RoundList")))
        .errors(&[])
}

fn get_round_doc() -> Op {
    Op::new("getRound", "rounds", "Read a round")
        .notes(
            "An official only for a round whose scope overlaps its area (`403 out_of_scope`, \
             audited as `denied`; an unknown round is `404 unknown_round` first), with every \
             count taken over the part of the round inside its area (the numbers of `coverage` \
             of its area at `depth=0`).",
        )
        .param(round_id_param())
        .ok(200, json_response("The round with its counts.", r("Round")))
        .errors(&[Code::UnknownRound, Code::OutOfScope])
}

fn close_round_doc() -> Op {
    let official_inside = "An official only for a round whose whole scope lies inside its area \
                           (`403 out_of_scope`; an unknown round is `404 unknown_round` first).";
    Op::new("closeRound", "rounds", "Close a round now")
        .notes(format!(
            "{official_inside} Idempotent: `flipped` (how many people this close flagged) is 0 \
             the second time. Closing before the deadline moves the deadline to the moment of \
             the close. Answers once the flips are in the gates' cache. Any request body is \
             ignored. Audited (`round_close`, `rows` = `flipped`)."
        ))
        .param(round_id_param())
        .ok(
            200,
            json_response(
                "The closed round and how many people it flagged.",
                r("CloseAnswer"),
            ),
        )
        .errors(
            &[
                &[Code::UnknownRound, Code::OutOfScope][..],
                &WRITE_ERRORS[..],
            ]
            .concat(),
        )
}

fn coverage_doc() -> Op {
    Op::new("coverage", "rounds", "Coverage by area")
        .notes(
            "The counts of `area` and of its child nodes `depth` levels down; children are the \
             child nodes with at least one resident in scope, sorted by area; every node carries \
             `children` (`[]` at the bottom and for `depth=0`). A heavy read: past the read \
             budget it is `503 overloaded` with `Retry-After`. Any other query parameter, or one \
             given twice, is `400 invalid_query`. Not audited.",
        )
        .param(round_id_param())
        .param(area_query(
            "an official's own area; for an admin the lowest area node holding the round's whole \
             scope (its common prefix).",
        ))
        .param(query_param(
            "depth",
            json!({ "type": "integer", "minimum": 0, "maximum": COVERAGE_MAX_DEPTH, "default": 1 }),
            &format!(
                "How many levels of children, a whole number from 0 to {COVERAGE_MAX_DEPTH}; \
                 otherwise `400 invalid_query`."
            ),
        ))
        .ok(200, json_response("The coverage tree.", r("Coverage")))
        .errors(&[&VIEW_ERRORS[..], &[Code::Overloaded]].concat())
}

fn progress_doc() -> Op {
    Op::new("progress", "rounds", "Samples by hour")
        .notes(
            "In-scope people under `area` by the hour (Asia/Shanghai) of their first sample inside \
             the window, every hour from the window's first to its last (or the current one, while \
             the window is running), in order, empty hours as 0. Any other query parameter, or one \
             given twice, is `400 invalid_query`. An archived round (Retention) keeps no \
             per-person sample hours: `410 round_archived`. Not audited.",
        )
        .param(round_id_param())
        .param(area_query(
            "an official's own area; for an admin the whole round, answered as `\"area\": null`.",
        ))
        .ok(200, json_response("Hourly buckets.", r("Progress")))
        .errors(&[&VIEW_ERRORS[..], &[Code::RoundArchived]].concat())
}

/// The deepest `depth` coverage accepts.
pub const COVERAGE_MAX_DEPTH: u32 = 32;

/// The error codes of the views of a round (missing lists, coverage, progress).
pub(crate) const VIEW_ERRORS: [Code; 4] = [
    Code::InvalidQuery,
    Code::UnknownArea,
    Code::OutOfScope,
    Code::UnknownRound,
];

fn count_props() -> Vec<(&'static str, Value)> {
    vec![
        (
            "in_scope",
            count("Residents in the round's scope (frozen at the close)."),
        ),
        (
            "sampled",
            count("Sampled inside `[opens_at, deadline]`, whenever the record arrived."),
        ),
        (
            "late",
            count("The part of `sampled` whose record arrived after the close."),
        ),
        ("made_up", count("Sampled after the deadline.")),
        ("exempt", count("Covered by an exemption.")),
        (
            "missing",
            count("In scope, not sampled, not made up, not exempt."),
        ),
    ]
}

const COUNT_KEYS: [&str; 6] = [
    "in_scope", "sampled", "late", "made_up", "exempt", "missing",
];

/// The schemas this file's operations name.
pub(crate) fn schemas() -> Vec<(&'static str, Value)> {
    let mut coverage_props = vec![("area", r("AreaPath"))];
    coverage_props.extend(count_props());
    coverage_props.push((
        "children",
        json!({ "type": "array", "items": r("Coverage"), "description": "Child nodes with at least one resident in scope, sorted by area; `[]` at the bottom." }),
    ));
    let mut coverage_required = vec!["area"];
    coverage_required.extend(COUNT_KEYS);
    coverage_required.push("children");
    vec![
        (
            "RoundRequest",
            closed_object(
                "",
                &["name", "scope", "opens_at", "deadline"],
                vec![
                    (
                        "name",
                        json!({ "type": "string", "minLength": 1, "maxLength": 200, "pattern": NOT_BLANK }),
                    ),
                    (
                        "scope",
                        json!({ "type": "array", "minItems": 1, "items": r("AreaPath"), "description": "Area paths in the register." }),
                    ),
                    ("opens_at", time("", false)),
                    ("deadline", time("After `opens_at`.", false)),
                ],
            ),
        ),
        (
            "Counts",
            object(
                "Each in-scope resident is counted in exactly one of `sampled`, `made_up`, `exempt`, \
                 `missing` (in that order of precedence): `in_scope = sampled + made_up + exempt + missing`.",
                &COUNT_KEYS,
                count_props(),
            ),
        ),
        (
            "Round",
            object(
                "",
                &[
                    "id",
                    "name",
                    "scope",
                    "opens_at",
                    "deadline",
                    "state",
                    "closed_at",
                    "counts",
                ],
                vec![
                    ("id", r("RoundId")),
                    ("name", string("")),
                    ("scope", json!({ "type": "array", "items": r("AreaPath") })),
                    ("opens_at", time("", false)),
                    (
                        "deadline",
                        time("Moved to the close when closed early.", false),
                    ),
                    ("state", enum_of(["open", "closed", "archived"])),
                    ("closed_at", time("Null while open.", true)),
                    ("counts", r("Counts")),
                ],
            ),
        ),
        (
            "RoundList",
            object(
                "",
                &["rounds"],
                vec![("rounds", json!({ "type": "array", "items": r("Round") }))],
            ),
        ),
        (
            "CloseAnswer",
            object(
                "",
                &["round", "flipped"],
                vec![
                    ("round", r("Round")),
                    (
                        "flipped",
                        count("How many people this close flagged (0 when it was already closed)."),
                    ),
                ],
            ),
        ),
        (
            "Coverage",
            object(
                "One area node; `area` is the full path.",
                &coverage_required,
                coverage_props,
            ),
        ),
        (
            "ProgressBucket",
            object(
                "",
                &["hour", "sampled"],
                vec![
                    ("hour", time("The start of the hour, `+08:00`.", false)),
                    (
                        "sampled",
                        count(
                            "In-scope people whose first sample inside the window fell in this hour.",
                        ),
                    ),
                ],
            ),
        ),
        (
            "Progress",
            object(
                "",
                &["round_id", "area", "buckets"],
                vec![
                    ("round_id", r("RoundId")),
                    ("area", json!({ "type": "string", "nullable": true })),
                    (
                        "buckets",
                        json!({ "type": "array", "items": r("ProgressBucket") }),
                    ),
                ],
            ),
        ),
    ]
}

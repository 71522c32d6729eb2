//! `/v1/rounds…`: create, list, read and close rounds; the officials' views
//! of a round — missing lists (JSON, CSV, XLSX, grouped by head), coverage
//! and progress.

use crate::domain::AuditAction;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde_json::{Value, json};

use crate::domain::{AreaPath, Role, Timestamp};
use crate::engine::{Command, Counts, CoverageNode, Engine, Round};
use crate::http::auth::Principal;
use crate::http::body::{self, Fields};
use crate::http::error::{ApiError, Code, Denial};
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

#[post("/v1/rounds")]
pub async fn create(
    state: web::Data<AppState>,
    who: Principal,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    who.require(&[Role::Admin, Role::Official])?;
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

#[get("/v1/rounds")]
pub async fn list(state: web::Data<AppState>, who: Principal) -> Result<HttpResponse, ApiError> {
    who.require(&[Role::Admin, Role::Official])?;
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

#[get("/v1/rounds/{id}")]
pub async fn get(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    who.require(&[Role::Admin, Role::Official])?;
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

#[post("/v1/rounds/{id}/close")]
pub async fn close(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    who.require(&[Role::Admin, Role::Official])?;
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

#[get("/v1/rounds/{id}/coverage")]
pub async fn coverage(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    who.require(&[Role::Admin, Role::Official])?;
    let id = parse_round_id(&id)?;
    let q = body::query(&req, &["area", "depth"])?;
    let depth = match q.get("depth") {
        Some(d) => d.parse::<u32>().ok().filter(|&d| d <= 32).ok_or_else(|| {
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

#[get("/v1/rounds/{id}/progress")]
pub async fn progress(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    who.require(&[Role::Admin, Role::Official])?;
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

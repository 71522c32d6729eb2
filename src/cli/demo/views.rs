//! What `rollcall demo` shows once the first day is over: what gates
//! answer for the people whose story it knows, what the official pulls
//! (the round, coverage, the longest missing list, progress), and the
//! counts the plan says the server must give.

use std::collections::BTreeSet;

use anyhow::Context;
use serde_json::Value;

use super::steps::{AfterClose, Cast, Day};
use super::{AreaCounts, GateCheck, ListedPerson};
use crate::cli::sim::Counts;

/// What gates see now, for one person of each kind the day made.
pub(super) async fn gates(
    cast: &Cast,
    day: &Day,
    positive: usize,
    after: &AfterClose,
) -> anyhow::Result<Vec<GateCheck>> {
    let (api, gate, city, plan) = (&cast.api, &cast.gate, &cast.city, &day.plan);
    let (exempted, make_up_people) = (&after.exempted, &after.make_up_people);
    let pick = |v: &[u32]| v.first().map(|&p| city.people[p as usize].id.clone());
    let missing_people: Vec<u32> = plan
        .no_shows
        .iter()
        .copied()
        .filter(|p| !exempted.contains(p) && !make_up_people.contains(p))
        .collect();
    let pos_member = plan.tubes[positive]
        .members
        .iter()
        .find_map(|&m| plan.scans[m as usize].person)
        .map(|p| city.people[p as usize].id.clone());
    let on_time_clean: Vec<u32> = {
        let in_pos: BTreeSet<u32> = plan.tubes[positive]
            .members
            .iter()
            .filter_map(|&m| plan.scans[m as usize].person)
            .collect();
        plan.on_time_people
            .iter()
            .copied()
            .filter(|p| !in_pos.contains(p))
            .take(1)
            .collect()
    };
    let mut gates = Vec::new();
    for (who, id) in [
        ("sampled on time", pick(&on_time_clean)),
        ("synced late", pick(&plan.held_people)),
        ("made up", pick(make_up_people)),
        ("still missing", pick(&missing_people)),
        ("in the positive pool", pos_member),
    ] {
        let Some(id) = id else { continue };
        let v = api
            .get(&format!("/v1/status/{id}"), gate, &[])
            .await?
            .expect(200, "asking a gate")?;
        gates.push(GateCheck {
            who,
            person_id: mask(&id),
            color: v["color"].as_str().unwrap_or_default().to_owned(),
            reasons: v["reasons"]
                .as_array()
                .map(|rs| {
                    rs.iter()
                        .filter_map(|r| r["code"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        });
    }
    Ok(gates)
}

/// What the official pulls.
pub(super) struct Views {
    pub final_round: Value,
    pub counts: Counts,
    pub communities: Vec<AreaCounts>,
    /// The ten grids with the most people missing.
    pub grids: Vec<AreaCounts>,
    pub top_list: Vec<ListedPerson>,
    pub top_list_total: u64,
    pub progress: Vec<(String, u64)>,
}

/// The round, coverage by community and by grid, the longest grid's
/// missing list and the hourly progress, as the official reads them.
pub(super) async fn official_views(cast: &Cast, round_path: &str) -> anyhow::Result<Views> {
    let (api, official, subdistrict) = (&cast.api, &cast.official, &cast.subdistrict);
    let final_round = api
        .get(round_path, official, &[])
        .await?
        .expect(200, "reading the round")?;
    let counts = Counts::from_json(&final_round["counts"])?;
    let cov_path = format!("{round_path}/coverage");
    let cov1 = api
        .get(
            &cov_path,
            official,
            &[("area", subdistrict), ("depth", "1")],
        )
        .await?
        .expect(200, "reading coverage by community")?;
    let communities = children(&cov1)?;
    let cov2 = api
        .get(
            &cov_path,
            official,
            &[("area", subdistrict), ("depth", "2")],
        )
        .await?
        .expect(200, "reading coverage by grid")?;
    let mut grids = Vec::new();
    for c in cov2["children"].as_array().into_iter().flatten() {
        grids.extend(children(c)?);
    }
    grids.sort_by(|a, b| {
        b.counts
            .missing
            .cmp(&a.counts.missing)
            .then_with(|| a.area.cmp(&b.area))
    });
    grids.truncate(10);
    let (top_list, top_list_total) = match grids.first() {
        Some(g) => {
            let v = api
                .get(
                    &format!("{round_path}/missing"),
                    official,
                    &[("area", &g.area), ("format", "json")],
                )
                .await?
                .expect(200, "pulling a missing list")?;
            let people = v["people"].as_array().cloned().unwrap_or_default();
            let list = people
                .iter()
                .take(5)
                .map(|p| ListedPerson {
                    person_id: p["person_id"].as_str().unwrap_or_default().to_owned(),
                    name: p["name"].as_str().unwrap_or_default().to_owned(),
                    household: p["household"].as_str().unwrap_or_default().to_owned(),
                    head: match &p["head"] {
                        Value::Null => "—".to_owned(),
                        h => format!(
                            "{} {} {}",
                            h["title"].as_str().unwrap_or_default(),
                            h["name"].as_str().unwrap_or_default(),
                            h["phone"].as_str().unwrap_or_default()
                        ),
                    },
                })
                .collect();
            (list, v["total"].as_u64().unwrap_or_default())
        }
        None => (Vec::new(), 0),
    };
    let progress = api
        .get(
            &format!("{round_path}/progress"),
            official,
            &[("area", subdistrict)],
        )
        .await?
        .expect(200, "reading progress")?["buckets"]
        .as_array()
        .map(|bs| {
            bs.iter()
                .map(|b| {
                    (
                        b["hour"].as_str().unwrap_or_default().to_owned(),
                        b["sampled"].as_u64().unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Views {
        final_round,
        counts,
        communities,
        grids,
        top_list,
        top_list_total,
        progress,
    })
}

/// What the plan says the counts must be (each person scanned at most
/// once); nothing when the data directory held earlier rounds.
pub(super) fn expected(
    cast: &Cast,
    day: &Day,
    after: &AfterClose,
    earlier_rounds: usize,
) -> Option<Counts> {
    let (city, plan, exemptions) = (&cast.city, &day.plan, &day.exemptions);
    let make_up_people = &after.make_up_people;

    (earlier_rounds == 0).then(|| {
        let in_scope = city.people.len() as u64;
        let sampled = (plan.on_time_people.len() + plan.held_people.len()) as u64;
        let made_up = make_up_people.len() as u64;
        let exempt = exemptions.len() as u64;
        Counts {
            in_scope,
            sampled,
            late: plan.held_people.len() as u64,
            made_up,
            exempt,
            missing: in_scope - sampled - made_up - exempt,
        }
    })
}

fn children(node: &Value) -> anyhow::Result<Vec<AreaCounts>> {
    node["children"]
        .as_array()
        .context("a coverage node without children")?
        .iter()
        .map(|c| {
            Ok(AreaCounts {
                area: c["area"].as_str().unwrap_or_default().to_owned(),
                counts: Counts::from_json(c)?,
            })
        })
        .collect()
}

/// The contract's mask: the first 6 and last 4 characters.
fn mask(id: &str) -> String {
    if id.len() == 18 {
        format!("{}********{}", &id[..6], &id[14..])
    } else {
        id.to_owned()
    }
}

//! The demo's last step, the next day's round, and the upload helpers
//! both days use: creating a round, exempting people, posting uploads
//! concurrently, make-up samples.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use futures_util::future::join_all;
use serde_json::json;

use super::{AreaCounts, HOUR_MS, NextRound, Uploads};
use crate::cli::sim::{self, Api, City, Counts, DayPlan, Upload};
use crate::domain::Timestamp;

/// The next day's round: created now over the subdistrict, everyone who
/// came the first day (on time, late or for a make-up) sampled again save one
/// in 25, closed by the official once the uploads are in. Whoever missed the
/// first day and still has not come misses this one too: the repeat missers.
/// Only people sampled in the first round are sampled, so its counts stay
/// as printed.
#[allow(clippy::too_many_arguments)] // the demo's state, handed over as it is
pub(super) async fn next_day(
    api: &Api,
    official: &str,
    scanners: &[String],
    city: &City,
    plan: &DayPlan,
    make_up_people: &[u32],
    subdistrict: &str,
    tag: &str,
    grids: &[AreaCounts],
) -> anyhow::Result<NextRound> {
    // The next whole second: every earlier sample (the make-ups) stays out
    // of its window, every one taken from here on is in it.
    let opens = Timestamp::from_datetime(chrono::Utc::now()).as_millis() / 1000 * 1000 + 1000;
    while Timestamp::from_datetime(chrono::Utc::now()).as_millis() <= opens {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = opens + 10 * 60 * 1000;
    let name = "第2轮全员核酸（次日）";
    let id = api
        .post_raw(
            "/v1/rounds",
            official,
            "application/json",
            serde_json::to_vec(&json!({
                "name": name,
                "scope": [subdistrict],
                "opens_at": Timestamp::from_millis(opens).to_rfc3339(),
                "deadline": Timestamp::from_millis(deadline).to_rfc3339(),
            }))?,
        )
        .await?
        .expect(201, "creating the next day's round")?["id"]
        .as_str()
        .context("the round has no id")?
        .to_owned();
    let came: Vec<u32> = plan
        .on_time_people
        .iter()
        .chain(&plan.held_people)
        .chain(make_up_people)
        .copied()
        .enumerate()
        .filter(|(i, _)| i % 25 != 7)
        .map(|(_, p)| p)
        .collect();
    let mut sent = Uploads::default();
    // Under the batch limit per upload; each chunk in its own tubes.
    for (k, chunk) in came.chunks(5_000).enumerate() {
        let uploads = make_up_uploads(city, chunk, &format!("{tag}N{k}"));
        post_uploads(api, scanners, &uploads, &mut sent, None).await?;
    }
    let closed = api
        .post_raw(
            &format!("/v1/rounds/{id}/close"),
            official,
            "application/json",
            "{}",
        )
        .await?
        .expect(200, "closing the next day's round")?;
    let counts = Counts::from_json(&closed["round"]["counts"])?;
    let repeat = api
        .get(
            "/v1/repeat-missing",
            official,
            &[("last", "2"), ("min", "2")],
        )
        .await?
        .expect(200, "reading the repeat missers")?;
    let messages = match grids.first() {
        Some(g) => {
            api.get_text(
                &format!("/v1/rounds/{id}/missing"),
                official,
                &[
                    ("area", g.area.as_str()),
                    ("group_by", "head"),
                    ("format", "text"),
                ],
            )
            .await?
        }
        None => String::new(),
    };
    let blocks: Vec<&str> = messages
        .split("\n\n")
        .filter(|m| !m.trim().is_empty())
        .collect();
    Ok(NextRound {
        round_id: id,
        round_name: name.to_owned(),
        counts,
        sent: sent.accepted,
        repeat_missers: repeat["total"].as_u64().unwrap_or_default(),
        messages: blocks.len(),
        first_message: blocks
            .first()
            .map(|m| m.trim_end().to_owned())
            .unwrap_or_default(),
    })
}

pub(super) async fn create_round(
    api: &Api,
    token: &str,
    scope: &str,
    opens_ms: i64,
    deadline_ms: i64,
) -> anyhow::Result<String> {
    let v = api
        .post_json(
            "/v1/rounds",
            token,
            &json!({
                "name": format!("{scope}全员核酸（演示）"),
                "scope": [scope],
                "opens_at": Timestamp::from_millis(opens_ms).to_rfc3339(),
                "deadline": Timestamp::from_millis(deadline_ms).to_rfc3339(),
            }),
        )
        .await?
        .expect(201, "creating the round")?;
    v["id"]
        .as_str()
        .map(str::to_owned)
        .context("the round has no id")
}

/// Exempts a few of the people who will not turn up (bedridden elders,
/// infants, people in hospital or away), as an official records them
/// before the deadline. Returns who.
pub(super) async fn exempt(
    api: &Api,
    token: &str,
    plan: &DayPlan,
    city: &City,
    opens_ms: i64,
    deadline_ms: i64,
) -> anyhow::Result<Vec<u32>> {
    let chosen: Vec<u32> = plan.no_shows.iter().copied().step_by(60).take(40).collect();
    let from = Timestamp::from_millis(opens_ms - 24 * HOUR_MS).to_rfc3339();
    let until = Timestamp::from_millis(deadline_ms + 7 * 24 * HOUR_MS).to_rfc3339();
    let this_year = Timestamp::from_millis(deadline_ms)
        .shanghai_date()
        .format("%Y")
        .to_string();
    let this_year: i32 = this_year.parse().unwrap_or(2026);
    for &p in &chosen {
        let id = &city.people[p as usize].id;
        let born: i32 = id.get(6..10).and_then(|y| y.parse().ok()).unwrap_or(1980);
        let reason = match this_year - born {
            age if age < 2 => "infant",
            age if age >= 80 => "bedridden",
            _ if p % 2 == 0 => "hospitalized",
            _ => "away",
        };
        api.post_json(
            "/v1/exemptions",
            token,
            &json!({"person_id": id, "reason": reason, "from": from, "until": until, "note": "demo"}),
        )
        .await?
        .expect(201, "granting an exemption")?;
    }
    Ok(chosen)
}

/// Posts uploads concurrently (each site's scanner its own), resending
/// those marked for it, and adds the verdicts to `tally`. With a deadline,
/// counts the registered people in uploads answered after it.
pub(super) async fn post_uploads(
    api: &Api,
    scanners: &[String],
    uploads: &[Upload],
    tally: &mut Uploads,
    deadline_ms: Option<i64>,
) -> anyhow::Result<()> {
    let sends = uploads.iter().map(|u| async move {
        let token = &scanners[u.site as usize];
        let mut answers = Vec::new();
        for _ in 0..if u.resend { 2 } else { 1 } {
            let v = api
                .post_raw("/v1/records", token, "application/json", u.body.clone())
                .await?
                .expect(200, "uploading records")?;
            answers.push(v);
        }
        let answered = Timestamp::from_datetime(chrono::Utc::now()).as_millis();
        anyhow::Ok((u, answers, answered))
    });
    for r in join_all(sends).await {
        let (u, answers, answered) = r?;
        tally.resent += u64::from(u.resend);
        for v in &answers {
            tally.requests += 1;
            tally.items += u.items as u64;
            tally.accepted += v["accepted"].as_u64().unwrap_or_default();
            tally.duplicates += v["duplicates"].as_u64().unwrap_or_default();
            tally.unregistered += v["unregistered"].as_u64().unwrap_or_default();
            for rej in v["rejected"].as_array().into_iter().flatten() {
                let code = rej["code"].as_str().unwrap_or("?").to_owned();
                *tally.rejected.entry(code).or_default() += 1;
            }
        }
        if let Some(d) = deadline_ms
            && answered > d
        {
            tally.overran += answers
                .first()
                .map_or(0, |v| v["accepted"].as_u64().unwrap_or_default());
        }
    }
    Ok(())
}

/// One upload per site for the make-up samples, taken now, in fresh tubes.
pub(super) fn make_up_uploads(city: &City, people: &[u32], tag: &str) -> Vec<Upload> {
    let now = Timestamp::from_datetime(chrono::Utc::now()).to_rfc3339();
    let mut per_site: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for &p in people {
        let c = city.people[p as usize].community;
        let site = city
            .sites
            .iter()
            .position(|s| s.community == c)
            .unwrap_or(0) as u32;
        per_site.entry(site).or_default().push(p);
    }
    per_site
        .into_iter()
        .map(|(site, ps)| {
            let mut body = String::from(r#"{"records":["#);
            for (i, &p) in ps.iter().enumerate() {
                if i > 0 {
                    body.push(',');
                }
                let tube = format!("T{tag}-M{}-{:04}", city.sites[site as usize].id, i / 10);
                sim::push_record(&mut body, &city.people[p as usize].id, &tube, &now, None);
            }
            body.push_str("]}");
            Upload {
                site,
                body,
                items: ps.len(),
                bad: 0,
                resend: false,
            }
        })
        .collect()
}

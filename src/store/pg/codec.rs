//! An [`Event`] as one row's body in the PostgreSQL log, and back.
//!
//! The PostgreSQL store keeps one row per event (`events(seq, body)`), so a
//! standby follows the log with one ordered range scan by `seq` and a batch
//! of 500 records is one row, not 500. The body is compact JSON of plain
//! values (numbers and strings, no domain types); reading it back goes
//! through the domain's parsers, so a body they refuse makes the store
//! refuse to start (`Corrupt`) rather than guess, as the SQLite replay does.

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::domain::register::{HeadRow, RegisterRow};
use crate::domain::{AreaPath, ExemptionReason, PersonId, TestResult, Timestamp, TubeId};
use crate::engine::{Event, ExemptionSpec, RecordItem, ResultItem, RoundSpec};

type S<'a> = Cow<'a, str>;

/// The wire form: tuples keep each row short.
#[derive(Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
enum Body<'a> {
    Register {
        at: i64,
        #[serde(borrow)]
        rows: Vec<(u64, S<'a>, S<'a>, S<'a>, S<'a>)>,
    },
    Heads {
        at: i64,
        #[serde(borrow)]
        rows: Vec<(S<'a>, S<'a>, S<'a>, S<'a>)>,
    },
    ResidentDelete {
        person: u64,
        at: i64,
    },
    /// `(person, tube, collected_at, site)`.
    Records {
        at: i64,
        #[serde(borrow)]
        items: Vec<(u64, S<'a>, i64, S<'a>)>,
    },
    /// `(tube, result, reported_at)`.
    Results {
        at: i64,
        #[serde(borrow)]
        items: Vec<(S<'a>, S<'a>, i64)>,
    },
    RoundCreate {
        id: u32,
        name: S<'a>,
        #[serde(borrow)]
        scope: Vec<S<'a>>,
        opens_at: i64,
        deadline: i64,
        created_at: i64,
    },
    RoundClose {
        id: u32,
        at: i64,
    },
    ExemptionCreate {
        id: u32,
        person: u64,
        reason: S<'a>,
        from: i64,
        until: i64,
        note: S<'a>,
        created_at: i64,
    },
    ExemptionDelete {
        id: u32,
        at: i64,
    },
    Clear {
        person: u64,
        note: S<'a>,
        at: i64,
    },
}

/// How the body of a record event and of a result event begins (the tag is
/// serialised first): what the store's `purgeable` column tests, in hex, so
/// retention finds the events it may delete without reading a body (the
/// tests hold the two to each other).
#[cfg(test)]
const PURGEABLE: [&[u8]; 2] = [br#"{"k":"records","#, br#"{"k":"results","#];

/// The event's body, as stored.
pub fn encode(event: &Event) -> Vec<u8> {
    let body = match event {
        Event::Register { rows, at } => Body::Register {
            at: at.as_millis(),
            rows: rows
                .iter()
                .map(|r| {
                    (
                        r.person_id.as_u64(),
                        r.name.as_str().into(),
                        r.phone.as_str().into(),
                        r.area.as_str().into(),
                        r.household.as_str().into(),
                    )
                })
                .collect(),
        },
        Event::Heads { rows, at } => Body::Heads {
            at: at.as_millis(),
            rows: rows
                .iter()
                .map(|h| {
                    (
                        h.area.as_str().into(),
                        h.title.as_str().into(),
                        h.name.as_str().into(),
                        h.phone.as_str().into(),
                    )
                })
                .collect(),
        },
        Event::ResidentDelete { person_id, at } => Body::ResidentDelete {
            person: person_id.as_u64(),
            at: at.as_millis(),
        },
        Event::Records { arrived_at, items } => Body::Records {
            at: arrived_at.as_millis(),
            items: items
                .iter()
                .map(|it| {
                    (
                        it.person_id.as_u64(),
                        it.tube_id.as_str().into(),
                        it.collected_at.as_millis(),
                        (&*it.site).into(),
                    )
                })
                .collect(),
        },
        Event::Results { arrived_at, items } => Body::Results {
            at: arrived_at.as_millis(),
            items: items
                .iter()
                .map(|it| {
                    (
                        it.tube_id.as_str().into(),
                        it.result.as_str().into(),
                        it.reported_at.as_millis(),
                    )
                })
                .collect(),
        },
        Event::RoundCreate(s) => Body::RoundCreate {
            id: s.id,
            name: s.name.as_str().into(),
            scope: s.scope.iter().map(|a| a.as_str().into()).collect(),
            opens_at: s.opens_at.as_millis(),
            deadline: s.deadline.as_millis(),
            created_at: s.created_at.as_millis(),
        },
        Event::RoundClose { id, at } => Body::RoundClose {
            id: *id,
            at: at.as_millis(),
        },
        Event::ExemptionCreate(s) => Body::ExemptionCreate {
            id: s.id,
            person: s.person_id.as_u64(),
            reason: s.reason.as_str().into(),
            from: s.from.as_millis(),
            until: s.until.as_millis(),
            note: s.note.as_str().into(),
            created_at: s.created_at.as_millis(),
        },
        Event::ExemptionDelete { id, at } => Body::ExemptionDelete {
            id: *id,
            at: at.as_millis(),
        },
        Event::Clear {
            person_id,
            note,
            at,
        } => Body::Clear {
            person: person_id.as_u64(),
            note: note.as_str().into(),
            at: at.as_millis(),
        },
    };
    serde_json::to_vec(&body).expect("plain values serialise")
}

fn person(v: u64) -> Result<PersonId, String> {
    PersonId::from_u64(v).map_err(|e| format!("person_id: {e}"))
}

fn area(s: &str) -> Result<AreaPath, String> {
    AreaPath::parse(s).map_err(|e| format!("area: {e}"))
}

fn tube(s: &str) -> Result<TubeId, String> {
    TubeId::parse(s).map_err(|e| format!("tube_id: {e}"))
}

fn ms(v: i64) -> Timestamp {
    Timestamp::from_millis(v)
}

/// A stored body back into its event; `Err` says what is wrong with it.
pub fn decode(bytes: &[u8]) -> Result<Event, String> {
    let body: Body<'_> = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    Ok(match body {
        Body::Register { at, rows } => Event::Register {
            at: ms(at),
            rows: rows
                .into_iter()
                .map(|(p, name, phone, a, household)| {
                    Ok(RegisterRow {
                        person_id: person(p)?,
                        name: name.into_owned(),
                        phone: phone.into_owned(),
                        area: area(&a)?,
                        household: household.into_owned(),
                    })
                })
                .collect::<Result<_, String>>()?,
        },
        Body::Heads { at, rows } => Event::Heads {
            at: ms(at),
            rows: rows
                .into_iter()
                .map(|(a, title, name, phone)| {
                    Ok(HeadRow {
                        area: area(&a)?,
                        title: title.into_owned(),
                        name: name.into_owned(),
                        phone: phone.into_owned(),
                    })
                })
                .collect::<Result<_, String>>()?,
        },
        Body::ResidentDelete { person: p, at } => Event::ResidentDelete {
            person_id: person(p)?,
            at: ms(at),
        },
        Body::Records { at, items } => {
            // Batches come from one scanner: share the site's allocation.
            let mut last: Option<Arc<str>> = None;
            Event::Records {
                arrived_at: ms(at),
                items: items
                    .into_iter()
                    .map(|(p, t, collected, site)| {
                        let site = match &last {
                            Some(s) if **s == *site => s.clone(),
                            _ => {
                                let s: Arc<str> = Arc::from(&*site);
                                last = Some(s.clone());
                                s
                            }
                        };
                        Ok(RecordItem {
                            person_id: person(p)?,
                            tube_id: tube(&t)?,
                            collected_at: ms(collected),
                            site,
                        })
                    })
                    .collect::<Result<_, String>>()?,
            }
        }
        Body::Results { at, items } => Event::Results {
            arrived_at: ms(at),
            items: items
                .into_iter()
                .map(|(t, r, reported)| {
                    Ok(ResultItem {
                        tube_id: tube(&t)?,
                        result: r
                            .parse::<TestResult>()
                            .map_err(|e| format!("result: {e}"))?,
                        reported_at: ms(reported),
                    })
                })
                .collect::<Result<_, String>>()?,
        },
        Body::RoundCreate {
            id,
            name,
            scope,
            opens_at,
            deadline,
            created_at,
        } => Event::RoundCreate(RoundSpec {
            id,
            name: name.into_owned(),
            scope: scope
                .iter()
                .map(|a| area(a))
                .collect::<Result<_, String>>()?,
            opens_at: ms(opens_at),
            deadline: ms(deadline),
            created_at: ms(created_at),
        }),
        Body::RoundClose { id, at } => Event::RoundClose { id, at: ms(at) },
        Body::ExemptionCreate {
            id,
            person: p,
            reason,
            from,
            until,
            note,
            created_at,
        } => Event::ExemptionCreate(ExemptionSpec {
            id,
            person_id: person(p)?,
            reason: reason
                .parse::<ExemptionReason>()
                .map_err(|e| format!("reason: {e}"))?,
            from: ms(from),
            until: ms(until),
            note: note.into_owned(),
            created_at: ms(created_at),
        }),
        Body::ExemptionDelete { id, at } => Event::ExemptionDelete { id, at: ms(at) },
        Body::Clear {
            person: p,
            note,
            at,
        } => Event::Clear {
            person_id: person(p)?,
            note: note.into_owned(),
            at: ms(at),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(n: u64) -> PersonId {
        PersonId::from_u64(61_080_219_800_101_000 + n).unwrap()
    }

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millis(1_650_340_800_000 + ms)
    }

    /// One event of every kind, with awkward text.
    fn every_kind() -> Vec<Event> {
        let area = AreaPath::parse("崇文路街道/学院社区/第01网格").unwrap();
        // Quotes, a backslash and a tab: the JSON escapes them, and the
        // decoder then owns what it cannot borrow.
        let awkward = "王 \"芳\"\\\t".to_owned();
        let site: Arc<str> = "S\"01".into();
        vec![
            Event::Register {
                rows: vec![RegisterRow {
                    person_id: person(1),
                    name: awkward.clone(),
                    phone: "13900000000".into(),
                    area: area.clone(),
                    household: "01-\\02".into(),
                }],
                at: at(0),
            },
            Event::Heads {
                rows: vec![HeadRow {
                    area: area.clone(),
                    title: "楼层长".into(),
                    name: awkward.clone(),
                    phone: "13900000001".into(),
                }],
                at: at(1),
            },
            Event::ResidentDelete {
                person_id: person(2),
                at: at(2),
            },
            Event::Records {
                arrived_at: at(3),
                items: vec![
                    RecordItem {
                        person_id: person(3),
                        tube_id: TubeId::parse("T-01").unwrap(),
                        collected_at: at(-5),
                        site: site.clone(),
                    },
                    RecordItem {
                        person_id: person(4),
                        tube_id: TubeId::parse("T-01").unwrap(),
                        collected_at: at(-4),
                        site,
                    },
                ],
            },
            Event::Results {
                arrived_at: at(4),
                items: vec![ResultItem {
                    tube_id: TubeId::parse("T-01").unwrap(),
                    result: TestResult::Positive,
                    reported_at: at(3),
                }],
            },
            Event::RoundCreate(RoundSpec {
                id: 7,
                name: awkward.clone(),
                scope: vec![area.clone()],
                opens_at: at(-10),
                deadline: at(100),
                created_at: at(5),
            }),
            Event::RoundClose { id: 7, at: at(100) },
            Event::ExemptionCreate(ExemptionSpec {
                id: 3,
                person_id: person(5),
                reason: ExemptionReason::Infant,
                from: at(0),
                until: at(1_000),
                note: awkward.clone(),
                created_at: at(6),
            }),
            Event::ExemptionDelete { id: 3, at: at(7) },
            Event::Clear {
                person_id: person(3),
                note: awkward,
                at: at(8),
            },
        ]
    }

    #[test]
    fn every_event_comes_back_as_it_went_in_escapes_included() {
        let events = every_kind();
        for ev in &events {
            let back = decode(&encode(ev)).unwrap();
            assert_eq!(&back, ev);
        }
        // A body the domain refuses is an error, not a guess.
        assert!(decode(br#"{"k":"round_close","id":1}"#).is_err());
        assert!(
            decode(br#"{"k":"resident_delete","person":99999999999999999999,"at":1}"#).is_err()
        );
        let bad_tube = br#"{"k":"results","at":1,"items":[["bad tube!","positive",1]]}"#;
        assert!(decode(bad_tube).unwrap_err().contains("tube_id"));
    }

    #[test]
    fn only_record_and_result_bodies_start_as_the_purgeable_column_tests() {
        // The migration's literals are these prefixes, in hex.
        for prefix in PURGEABLE {
            let hex = prefix.iter().fold(String::new(), |mut hex, b| {
                use std::fmt::Write;
                write!(hex, "{b:02x}").expect("a String takes it");
                hex
            });
            assert!(super::super::snap::MIGRATION.contains(&format!("'\\x{hex}'")));
        }
        for ev in every_kind() {
            let body = encode(&ev);
            let purgeable = PURGEABLE.iter().any(|p| body.starts_with(p));
            assert_eq!(
                purgeable,
                matches!(ev, Event::Records { .. } | Event::Results { .. }),
                "{}",
                String::from_utf8_lossy(&body)
            );
        }
    }
}

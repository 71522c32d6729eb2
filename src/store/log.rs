//! Writing events as rows: one function from an [`Event`] to the rows of its
//! table, all sharing the event's `seq`, in the event's order. The inverse is
//! `replay.rs`. Called inside the writer's open transaction; nothing here
//! commits.

use std::sync::LazyLock;

use rusqlite::{Connection, params};

use crate::engine::{Event, RecordItem, ResultItem};

/// Records per `INSERT` statement on the hot path. One statement with many
/// `VALUES` rows costs far less than as many one-row statements (one
/// `sqlite3_step` and reset instead of 64); 64 × 6 parameters stays well
/// below SQLite's limit of 32,766.
const RECORDS_PER_INSERT: usize = 64;

const INSERT_RECORD: &str = "INSERT INTO records
    (seq, person_id, tube_id, site, collected_at, arrived_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

static INSERT_RECORDS: LazyLock<String> = LazyLock::new(|| {
    let mut sql = String::from(
        "INSERT INTO records (seq, person_id, tube_id, site, collected_at, arrived_at) VALUES ",
    );
    for i in 0..RECORDS_PER_INSERT {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str("(?,?,?,?,?,?)");
    }
    sql
});

const INSERT_RESULT: &str = "INSERT INTO results
    (seq, tube_id, result, reported_at, arrived_at) VALUES (?1, ?2, ?3, ?4, ?5)";

/// Results per `INSERT` statement, packed like records (64 × 5 parameters).
static INSERT_RESULTS: LazyLock<String> = LazyLock::new(|| {
    let mut sql =
        String::from("INSERT INTO results (seq, tube_id, result, reported_at, arrived_at) VALUES ");
    for i in 0..RECORDS_PER_INSERT {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str("(?,?,?,?,?)");
    }
    sql
});

fn seq_param(seq: u64) -> i64 {
    // A log of 2^63 events is out of reach; the cast cannot wrap in practice.
    seq as i64
}

fn id_param(id: u64) -> i64 {
    id as i64
}

/// Appends the rows of `event` under `seq`. An event without rows (an empty
/// import) writes nothing: replaying nothing in its place changes nothing.
pub fn write_event(conn: &Connection, seq: u64, event: &Event) -> rusqlite::Result<()> {
    let seq = seq_param(seq);
    match event {
        Event::Register { rows, at } => {
            let mut st = conn.prepare_cached(
                "INSERT INTO register_rows (seq, person_id, name, phone, area, household, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for r in rows {
                st.execute(params![
                    seq,
                    id_param(r.person_id.as_u64()),
                    r.name,
                    r.phone,
                    r.area.as_str(),
                    r.household,
                    at.as_millis()
                ])?;
            }
        }
        Event::Heads { rows, at } => {
            let mut st = conn.prepare_cached(
                "INSERT INTO heads (seq, area, title, name, phone, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for h in rows {
                st.execute(params![
                    seq,
                    h.area.as_str(),
                    h.title,
                    h.name,
                    h.phone,
                    at.as_millis()
                ])?;
            }
        }
        Event::ResidentDelete { person_id, at } => {
            conn.prepare_cached(
                "INSERT INTO resident_deletes (seq, person_id, at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![seq, id_param(person_id.as_u64()), at.as_millis()])?;
        }
        Event::Records { arrived_at, items } => {
            write_records(conn, seq, arrived_at.as_millis(), items)?;
        }
        Event::Results { arrived_at, items } => {
            write_results(conn, seq, arrived_at.as_millis(), items)?;
        }
        Event::RoundCreate(spec) => {
            let scope: Vec<&str> = spec
                .scope
                .iter()
                .map(crate::domain::AreaPath::as_str)
                .collect();
            let scope = serde_json::to_string(&scope).expect("a list of strings serialises");
            conn.prepare_cached(
                "INSERT INTO rounds (seq, round_id, name, scope, opens_at, deadline, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                seq,
                spec.id,
                spec.name,
                scope,
                spec.opens_at.as_millis(),
                spec.deadline.as_millis(),
                spec.created_at.as_millis()
            ])?;
        }
        Event::RoundClose { id, at } => {
            conn.prepare_cached(
                "INSERT INTO round_closes (seq, round_id, at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![seq, id, at.as_millis()])?;
        }
        Event::ExemptionCreate(spec) => {
            conn.prepare_cached(
                "INSERT INTO exemptions
                   (seq, exemption_id, person_id, reason, from_at, until_at, note, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                seq,
                spec.id,
                id_param(spec.person_id.as_u64()),
                spec.reason.as_str(),
                spec.from.as_millis(),
                spec.until.as_millis(),
                spec.note,
                spec.created_at.as_millis()
            ])?;
        }
        Event::ExemptionDelete { id, at } => {
            conn.prepare_cached(
                "INSERT INTO exemption_deletes (seq, exemption_id, at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![seq, id, at.as_millis()])?;
        }
        Event::Clear {
            person_id,
            note,
            at,
        } => {
            conn.prepare_cached(
                "INSERT INTO clears (seq, person_id, note, at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                seq,
                id_param(person_id.as_u64()),
                note,
                at.as_millis()
            ])?;
        }
    }
    Ok(())
}

fn write_records(
    conn: &Connection,
    seq: i64,
    arrived_at: i64,
    items: &[RecordItem],
) -> rusqlite::Result<()> {
    let mut chunks = items.chunks_exact(RECORDS_PER_INSERT);
    if chunks.len() > 0 {
        let mut st = conn.prepare_cached(&INSERT_RECORDS)?;
        for chunk in &mut chunks {
            for (i, it) in chunk.iter().enumerate() {
                let b = i * 6;
                st.raw_bind_parameter(b + 1, seq)?;
                st.raw_bind_parameter(b + 2, id_param(it.person_id.as_u64()))?;
                st.raw_bind_parameter(b + 3, it.tube_id.as_str())?;
                st.raw_bind_parameter(b + 4, &*it.site)?;
                st.raw_bind_parameter(b + 5, it.collected_at.as_millis())?;
                st.raw_bind_parameter(b + 6, arrived_at)?;
            }
            st.raw_execute()?;
        }
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut st = conn.prepare_cached(INSERT_RECORD)?;
        for it in rest {
            st.execute(params![
                seq,
                id_param(it.person_id.as_u64()),
                it.tube_id.as_str(),
                &*it.site,
                it.collected_at.as_millis(),
                arrived_at
            ])?;
        }
    }
    Ok(())
}

/// A batch of results: 64 rows per prepared statement, the rest one by one.
fn write_results(
    conn: &Connection,
    seq: i64,
    arrived_at: i64,
    items: &[ResultItem],
) -> rusqlite::Result<()> {
    let mut chunks = items.chunks_exact(RECORDS_PER_INSERT);
    if chunks.len() > 0 {
        let mut st = conn.prepare_cached(&INSERT_RESULTS)?;
        for chunk in &mut chunks {
            for (i, it) in chunk.iter().enumerate() {
                let b = i * 5;
                st.raw_bind_parameter(b + 1, seq)?;
                st.raw_bind_parameter(b + 2, it.tube_id.as_str())?;
                st.raw_bind_parameter(b + 3, it.result.as_str())?;
                st.raw_bind_parameter(b + 4, it.reported_at.as_millis())?;
                st.raw_bind_parameter(b + 5, arrived_at)?;
            }
            st.raw_execute()?;
        }
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut st = conn.prepare_cached(INSERT_RESULT)?;
        for it in rest {
            st.execute(params![
                seq,
                it.tube_id.as_str(),
                it.result.as_str(),
                it.reported_at.as_millis(),
                arrived_at
            ])?;
        }
    }
    Ok(())
}

//! Writing events as rows: one function from an [`Event`] to the rows of its
//! table, all sharing the event's `seq`, in the event's order. The inverse is
//! `replay.rs`. Called inside the writer's open transaction; nothing here
//! commits.

use std::sync::LazyLock;

use rusqlite::{Connection, params};

use crate::domain::{PersonId, Timestamp};
use crate::engine::{Event, PackedRecords, RecordItem, ResultItem};

/// Results per `INSERT` statement. One statement with many `VALUES` rows
/// costs far less than as many one-row statements (one `sqlite3_step` and
/// reset instead of 64); 64 × 5 parameters stays well below SQLite's limit
/// of 32,766.
const RESULTS_PER_INSERT: usize = 64;

const INSERT_RESULT: &str = "INSERT INTO results
    (seq, tube_id, result, reported_at, arrived_at) VALUES (?1, ?2, ?3, ?4, ?5)";

static INSERT_RESULTS: LazyLock<String> = LazyLock::new(|| {
    let mut sql =
        String::from("INSERT INTO results (seq, tube_id, result, reported_at, arrived_at) VALUES ");
    for i in 0..RESULTS_PER_INSERT {
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
            conn.prepare_cached(
                "INSERT INTO record_batches (seq, arrived_at, count, body) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                seq,
                arrived_at.as_millis(),
                items.len() as i64,
                pack_records(items)
            ])?;
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

/// A batch of records as `record_batches.body`: per record, in order, the
/// person's ID (`u64`, little-endian), `collected_at` (milliseconds, `i64`,
/// little-endian), the tube ID (a length byte, then its ASCII), and the site
/// (a little-endian `u16` length, then its UTF-8; [`SAME_SITE`] for the
/// previous record's site, as a batch has one or a few).
pub fn pack_records(items: &[RecordItem]) -> Vec<u8> {
    let mut out = Vec::with_capacity(items.len() * 30 + 16);
    let mut last_site: Option<&str> = None;
    for it in items {
        out.extend_from_slice(&it.person_id.as_u64().to_le_bytes());
        out.extend_from_slice(&it.collected_at.as_millis().to_le_bytes());
        let tube = it.tube_id.as_str().as_bytes();
        // A tube ID has at most 32 characters, all ASCII.
        out.push(u8::try_from(tube.len()).expect("a tube ID fits a length byte"));
        out.extend_from_slice(tube);
        if last_site == Some(&*it.site) {
            out.extend_from_slice(&SAME_SITE.to_le_bytes());
        } else {
            // A site has at most 64 characters: at most 256 bytes.
            let len = u16::try_from(it.site.len())
                .ok()
                .filter(|&l| l != SAME_SITE)
                .expect("a site fits a length below SAME_SITE");
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(it.site.as_bytes());
            last_site = Some(&it.site);
        }
    }
    out
}

/// The site length that stands for "the previous record's site".
const SAME_SITE: u16 = u16::MAX;

/// Appends the records of a `record_batches.body` to `into`: how many, or
/// what is wrong with the body (nothing is taken on trust: the IDs go
/// through the domain's checks, as rows of `records` do).
pub fn unpack_records(body: &[u8], into: &mut PackedRecords) -> Result<usize, String> {
    let mut at = Cursor(body);
    let mut n = 0;
    let mut site: &str = "";
    while !at.0.is_empty() {
        let person = PersonId::from_u64(u64::from_le_bytes(at.array()?))
            .map_err(|e| format!("person_id: {e}"))?;
        let collected = Timestamp::from_millis(i64::from_le_bytes(at.array()?));
        let [tube_len] = at.array()?;
        let tube = at.text(usize::from(tube_len), "tube_id")?;
        let site_len = u16::from_le_bytes(at.array()?);
        if site_len == SAME_SITE {
            if n == 0 {
                return Err("the first record repeats a site".into());
            }
        } else {
            site = at.text(usize::from(site_len), "site")?;
        }
        into.push(person, tube, site, collected)
            .map_err(|e| format!("tube_id: {e}"))?;
        n += 1;
    }
    Ok(n)
}

/// What is left of a body being read.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err(format!("the body ends {} bytes short", n - self.0.len()));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.bytes(N)?.try_into().expect("N bytes"))
    }

    fn text(&mut self, n: usize, what: &str) -> Result<&'a str, String> {
        std::str::from_utf8(self.bytes(n)?).map_err(|_| format!("{what} is not UTF-8"))
    }
}

/// A batch of results: 64 rows per prepared statement, the rest one by one.
fn write_results(
    conn: &Connection,
    seq: i64,
    arrived_at: i64,
    items: &[ResultItem],
) -> rusqlite::Result<()> {
    let mut chunks = items.chunks_exact(RESULTS_PER_INSERT);
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::domain::TubeId;

    fn item(person: &str, tube: &str, site: &str, ms: i64) -> RecordItem {
        RecordItem {
            person_id: person.parse().unwrap(),
            tube_id: tube.parse::<TubeId>().unwrap(),
            collected_at: Timestamp::from_millis(ms),
            site: Arc::from(site),
        }
    }

    fn unpacked(body: &[u8]) -> Result<Vec<(PersonId, String, i64, String)>, String> {
        let mut batch = PackedRecords::default();
        let n = unpack_records(body, &mut batch)?;
        assert_eq!(n, batch.len());
        Ok(batch
            .iter()
            .map(|r| {
                (
                    r.person_id,
                    r.tube_id.to_owned(),
                    r.collected_at.as_millis(),
                    r.site.to_owned(),
                )
            })
            .collect())
    }

    #[test]
    fn a_batch_packs_and_unpacks_to_the_same_records() {
        let long_site = "站".repeat(64);
        let items = vec![
            item(
                "61080219850312001X",
                "T2204190001",
                "S01",
                1_650_000_000_000,
            ),
            item(
                "110101199003077774",
                "T2204190001",
                "S01",
                1_650_000_000_001,
            ),
            item("110101199003077774", "T-2", "S02", -5),
            item("61080219850312001X", &"A".repeat(32), &long_site, 0),
            item("110101199003077774", "T3", &long_site, i64::MAX),
        ];
        let body = pack_records(&items);
        let back = unpacked(&body).unwrap();
        let want: Vec<_> = items
            .iter()
            .map(|it| {
                (
                    it.person_id,
                    it.tube_id.as_str().to_owned(),
                    it.collected_at.as_millis(),
                    it.site.to_string(),
                )
            })
            .collect();
        assert_eq!(back, want);
        // A repeated site is written once: two bytes for each repeat.
        let once = pack_records(&items[..1]).len();
        assert_eq!(pack_records(&items[..2]).len(), 2 * once - 3);
        assert_eq!(unpacked(&[]).unwrap(), []);
    }

    #[test]
    fn a_damaged_body_is_refused() {
        let body = pack_records(&[
            item("61080219850312001X", "T1", "S01", 1),
            item("110101199003077774", "T2", "S01", 2),
        ]);
        // Cut anywhere inside a record.
        let first = pack_records(&[item("61080219850312001X", "T1", "S01", 1)]).len();
        for cut in 1..body.len() {
            if cut != first {
                assert!(unpacked(&body[..cut]).is_err(), "cut at {cut}");
            }
        }
        // A number that is no resident ID.
        let mut bad = body.clone();
        bad[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(unpacked(&bad).unwrap_err().contains("person_id"));
        // A tube ID with a character tube IDs never have.
        let mut bad = body.clone();
        bad[17] = b'_';
        assert!(unpacked(&bad).unwrap_err().contains("tube_id"));
        // A site that is not UTF-8.
        let mut bad = body.clone();
        bad[21] = 0xff;
        assert!(unpacked(&bad).unwrap_err().contains("site"));
        // A first record that says "the same site as before".
        let mut bad = body.clone();
        bad[19..21].copy_from_slice(&SAME_SITE.to_le_bytes());
        assert!(unpacked(&bad).is_err());
    }
}

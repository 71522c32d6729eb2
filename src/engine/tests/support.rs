//! A small harness that drives the engine as the store does: commands go
//! through `prepare` and the resulting event is applied; batches are judged
//! against a fresh overlay and only their accepted items are logged and
//! applied, with the batch's arrival time.

use std::sync::{Arc, OnceLock};

use crate::domain::register::{HeadRow, RegisterRow};
use crate::domain::{AreaPath, ExemptionReason, PersonId, TestResult, Timestamp, TubeId};
use crate::engine::{
    Applied, Command, CommandError, Engine, Event, Overlay, Policy, Prepared, RecordItem,
    ResultItem, Status, Verdict,
};

/// One pool for every test engine: building a pool per test costs threads.
pub fn pool() -> Arc<rayon::ThreadPool> {
    static POOL: OnceLock<Arc<rayon::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| Engine::build_pool(2)).clone()
}

/// A valid resident ID, distinct for every `n` below 50,000.
pub fn pid(n: u32) -> PersonId {
    let year = 1950 + u64::from(n / 1000);
    let seq = u64::from(n % 1000);
    let v = 110_101u64 * 100_000_000_000 + (year * 10_000 + 101) * 1000 + seq;
    PersonId::from_u64(v).expect("a valid test ID")
}

/// An RFC 3339 time.
pub fn t(s: &str) -> Timestamp {
    Timestamp::parse(s).expect("a valid test time")
}

pub fn area(s: &str) -> AreaPath {
    AreaPath::parse(s).expect("a valid test area")
}

pub fn tube(s: &str) -> TubeId {
    TubeId::parse(s).expect("a valid test tube")
}

pub const MIN: i64 = 60_000;
pub const HOUR: i64 = 3_600_000;
pub const DAY: i64 = 24 * HOUR;

pub fn row(n: u32, area_path: &str, household: &str, name: &str) -> RegisterRow {
    RegisterRow {
        person_id: pid(n),
        name: name.to_owned(),
        phone: format!("139{n:08}"),
        area: area(area_path),
        household: household.to_owned(),
    }
}

pub fn head(area_path: &str, title: &str, name: &str) -> HeadRow {
    HeadRow {
        area: area(area_path),
        title: title.to_owned(),
        name: name.to_owned(),
        phone: "13900000000".to_owned(),
    }
}

/// A record of person `n` into `tube_id` at `collected`, from site S01.
pub fn rec(n: u32, tube_id: &str, collected: Timestamp) -> RecordItem {
    rec_at(n, tube_id, collected, "S01")
}

pub fn rec_at(n: u32, tube_id: &str, collected: Timestamp, site: &str) -> RecordItem {
    RecordItem {
        person_id: pid(n),
        tube_id: tube(tube_id),
        collected_at: collected,
        site: Arc::from(site),
    }
}

pub fn res(tube_id: &str, result: TestResult, reported: Timestamp) -> ResultItem {
    ResultItem {
        tube_id: tube(tube_id),
        result,
        reported_at: reported,
    }
}

pub const ACCEPTED: Verdict = Verdict::Accepted { flag: false };
pub const FLAGGED: Verdict = Verdict::Accepted { flag: true };

/// An engine and the store-like steps around it, with the log of every
/// event applied (for replays from a snapshot).
pub struct Fx {
    pub engine: Engine,
    pub log: Vec<Event>,
}

impl Fx {
    pub fn new(policy: Policy) -> Fx {
        Fx {
            engine: Engine::new(policy, pool()),
            log: Vec::new(),
        }
    }

    fn apply(&mut self, event: Event) -> Applied {
        let applied = self.engine.apply(&event);
        self.log.push(event);
        applied
    }

    /// Prepares a command and applies its event, as the store would.
    pub fn command(
        &mut self,
        cmd: Command,
        now: Timestamp,
    ) -> Result<(Prepared, Applied), CommandError> {
        let (event, prepared) = self.engine.prepare(cmd, now)?;
        let applied = self.apply(event);
        Ok((prepared, applied))
    }

    pub fn register(&mut self, rows: Vec<RegisterRow>, now: Timestamp) -> Prepared {
        self.command(Command::Register(rows), now)
            .expect("register")
            .0
    }

    pub fn heads(&mut self, rows: Vec<HeadRow>, now: Timestamp) {
        self.command(Command::Heads(rows), now).expect("heads");
    }

    pub fn move_out(&mut self, n: u32, now: Timestamp) {
        self.command(Command::ResidentDelete(pid(n)), now)
            .expect("resident delete");
    }

    /// Judges a batch, logs and applies the accepted records; returns the
    /// verdicts and what applying changed.
    pub fn records(&mut self, items: Vec<RecordItem>, now: Timestamp) -> (Vec<Verdict>, Applied) {
        let mut overlay = Overlay::default();
        let verdicts = self.engine.judge_records(&items, now, &mut overlay);
        let accepted: Vec<RecordItem> = items
            .into_iter()
            .zip(&verdicts)
            .filter(|(_, v)| matches!(v, Verdict::Accepted { .. }))
            .map(|(it, _)| it)
            .collect();
        let applied = self.apply(Event::Records {
            arrived_at: now,
            items: accepted,
        });
        (verdicts, applied)
    }

    pub fn results(&mut self, items: Vec<ResultItem>, now: Timestamp) -> (Vec<Verdict>, Applied) {
        let mut overlay = Overlay::default();
        let verdicts = self.engine.judge_results(&items, now, &mut overlay);
        let accepted: Vec<ResultItem> = items
            .into_iter()
            .zip(&verdicts)
            .filter(|(_, v)| matches!(v, Verdict::Accepted { .. }))
            .map(|(it, _)| it)
            .collect();
        let applied = self.apply(Event::Results {
            arrived_at: now,
            items: accepted,
        });
        (verdicts, applied)
    }

    pub fn round(
        &mut self,
        scope: &[&str],
        opens: Timestamp,
        deadline: Timestamp,
        now: Timestamp,
    ) -> u32 {
        match self.try_round(scope, opens, deadline, now) {
            Ok(id) => id,
            Err(e) => panic!("round create: {e}"),
        }
    }

    pub fn try_round(
        &mut self,
        scope: &[&str],
        opens: Timestamp,
        deadline: Timestamp,
        now: Timestamp,
    ) -> Result<u32, CommandError> {
        let cmd = Command::RoundCreate {
            name: "第3轮全员核酸".to_owned(),
            scope: scope.iter().map(|s| area(s)).collect(),
            opens_at: opens,
            deadline,
        };
        match self.command(cmd, now)?.0 {
            Prepared::RoundId(id) => Ok(id),
            other => panic!("round create answered {other:?}"),
        }
    }

    /// Closes a round now; returns `flipped` and everyone whose status may have changed.
    pub fn close(&mut self, id: u32, now: Timestamp) -> Applied {
        self.command(Command::RoundClose { id, at: None }, now)
            .expect("close")
            .1
    }

    /// Closes a round as the scheduler does: dated at its deadline, `now` being later.
    pub fn close_at_deadline(&mut self, id: u32, now: Timestamp) -> Applied {
        let at = Some(self.engine.round(id).expect("round").deadline);
        self.command(Command::RoundClose { id, at }, now)
            .expect("close")
            .1
    }

    pub fn exempt(&mut self, n: u32, from: Timestamp, until: Timestamp, now: Timestamp) -> u32 {
        let cmd = Command::ExemptionCreate {
            person_id: pid(n),
            reason: ExemptionReason::Hospitalized,
            from,
            until,
            note: String::new(),
        };
        match self.command(cmd, now).expect("exemption create").0 {
            Prepared::ExemptionId(id) => id,
            other => panic!("exemption create answered {other:?}"),
        }
    }

    pub fn unexempt(&mut self, id: u32, now: Timestamp) -> Applied {
        self.command(Command::ExemptionDelete { id }, now)
            .expect("exemption delete")
            .1
    }

    pub fn clear(&mut self, n: u32, now: Timestamp) -> Applied {
        let cmd = Command::Clear {
            person_id: pid(n),
            note: String::new(),
        };
        self.command(cmd, now).expect("clear").1
    }

    pub fn status(&self, n: u32, now: Timestamp) -> Status {
        self.engine.status(pid(n), now)
    }

    pub fn counts(&self, round: u32) -> crate::engine::Counts {
        self.engine
            .counts(self.engine.round(round).expect("round"), None)
    }

    pub fn counts_in(&self, round: u32, area_path: &str) -> crate::engine::Counts {
        let node = self
            .engine
            .register()
            .node(&area(area_path))
            .expect("area node");
        self.engine
            .counts(self.engine.round(round).expect("round"), Some(node))
    }

    /// The missing list (whole round, or under an area) as person numbers' IDs.
    pub fn missing(&self, round: u32, area_path: Option<&str>) -> Vec<PersonId> {
        let node = area_path.map(|a| self.engine.register().node(&area(a)).expect("area node"));
        self.engine
            .missing(self.engine.round(round).expect("round"), node)
            .into_iter()
            .map(|row| self.engine.register().resident(row).person_id)
            .collect()
    }

    /// Checks that a snapshot taken after any prefix of the log, decoded and
    /// given the rest of the log, is the engine a replay of the whole log
    /// builds, byte for byte and by digest at `now`.
    pub fn check_snapshots(&self, now: Timestamp) {
        self.check_final_counts();
        let policy = *self.engine.policy();
        let replay = |events: &[Event], mut e: Engine| {
            for ev in events {
                e.apply(ev);
            }
            e
        };
        let whole = replay(&self.log, Engine::new(policy, pool()));
        let bytes = self.engine.encode_snapshot();
        assert_eq!(whole.encode_snapshot(), bytes, "a replay of the whole log");
        let digest = self.engine.digest(now);
        assert_eq!(whole.digest(now), digest);
        let n = self.log.len();
        let mut cuts = vec![0, n / 3, n / 2, n.saturating_sub(1), n];
        cuts.dedup();
        for k in cuts {
            let mut head = replay(&self.log[..k], Engine::new(policy, pool()));
            let snap = head.encode_snapshot();
            // What a periodic snapshot encodes: a frozen copy, while the
            // engine it came from goes on (sharing its register until an
            // import or an unknown ID copies it, and each chunk of its
            // arrays until it writes to it).
            let frozen = head.frozen();
            let went_on = replay(&self.log[k..], head);
            assert_eq!(
                frozen.encode_snapshot(),
                snap,
                "a copy frozen at {k} of {n}, after the rest was applied to its original"
            );
            assert_eq!(
                went_on.encode_snapshot(),
                bytes,
                "the original, frozen at {k} of {n}"
            );
            let back =
                Engine::decode_snapshot(&snap, policy, pool()).expect("the snapshot decodes");
            assert_eq!(back.encode_snapshot(), snap, "decoded at {k} of {n}");
            let rest = replay(&self.log[k..], back);
            assert_eq!(
                rest.encode_snapshot(),
                bytes,
                "snapshot at {k} of {n}, then the rest"
            );
            assert_eq!(
                rest.digest(now),
                digest,
                "digest after a snapshot at {k} of {n}"
            );
        }
    }

    /// Every closed round's kept counts equal a recount over its bitsets.
    pub fn check_final_counts(&self) {
        for (id, kept, recounted) in self.engine.final_counts_against_recount() {
            assert_eq!(kept, recounted, "round {id}'s kept counts");
        }
    }

    pub fn flipped(&self, round: u32) -> u64 {
        self.engine.round(round).expect("round").flipped
    }
}

//! A deliberately naive model of the contract, written from docs/api.md and the
//! conformance oracle's reading of it, not from the engine: plain maps,
//! linear scans, every answer recomputed from the raw records on each call.
//! Slow on purpose, so that it is obviously right; the property test checks
//! the engine against it.
//!
//! Two readings are pinned here that the oracle leaves to timestamps:
//! - A round's window is judged to the millisecond (a sample 300 ms after
//!   the deadline is a make-up); every other use of a sample time keeps the
//!   whole second (the engine's documented precision): `last_sample_at`,
//!   `last_negative_at` and the pooled-positive "later sample" test use the
//!   time floored to its second.
//! - A round created after its deadline counts the records it finds held as
//!   arrived by its deadline: the engine keeps no arrival time per record,
//!   so for the scheduler's close dated at that deadline, records that
//!   arrived between the deadline and the round's creation count as on time
//!   (the oracle, knowing every arrival, would call them late).
//! - A clear undoes the single-tube positives applied before it in the log
//!   (the oracle compares clock times, which only differs for events stamped
//!   in the same millisecond).
//! - Retention (docs/api.md, Retention): before each event other than a register
//!   import, a tube whose every sample and report is older than the
//!   acceptance window counted back from the whole hour of the latest event
//!   time is forgotten: its ID, used again, is a new tube, and rounds created
//!   (or closed early) afterwards do not see its records. A person's last
//!   sample, last negative and positives stay. A round closed
//!   `retention_days` ago is archived.

use std::collections::{BTreeMap, BTreeSet};

use crate::domain::{PersonId, ReasonCode, TestResult};
use crate::engine::{CommandError, Policy, Reason, RejectCode, RestoreOn, Verdict};

const FUTURE_SLACK: i64 = 5 * 60 * 1000;
const MAX_AGE: i64 = 30 * 24 * 3600 * 1000;
const HOUR: i64 = 3_600_000;

/// A registered resident's details.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Person {
    pub name: String,
    pub phone: String,
    pub area: String,
    pub household: String,
}

/// One accepted record.
#[derive(Clone, Debug)]
struct Rec {
    tube: String,
    pid: PersonId,
    /// Floored to the second.
    collected: i64,
    /// Exact, for the window.
    at: i64,
    arrived: i64,
    /// Position in the log.
    seq: u64,
    /// The log position of the event before which retention forgot the
    /// tube (`u64::MAX` while it is held).
    forgotten: u64,
}

#[derive(Clone, Debug)]
pub struct RoundR {
    pub id: u32,
    pub scope: Vec<String>,
    pub opens: i64,
    pub deadline: i64,
    /// Log position of the creation, and the deadline it was created with.
    created_seq: u64,
    created_deadline: i64,
    /// Log position from which the round saw only held tubes' records: its
    /// creation, or its early close (which counts the round again).
    marked_from: u64,
    pub closed_at: Option<i64>,
    frozen: Option<BTreeSet<PersonId>>,
    pub flipped: u64,
}

#[derive(Clone, Debug)]
struct Ex {
    pid: PersonId,
    from: i64,
    until: i64,
}

/// A person's place in one round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum St {
    Sampled { late: bool },
    MadeUp,
    Exempt,
    Missing,
}

/// `[in_scope, sampled, late, made_up, exempt, missing]`.
pub type RefCounts = [u64; 6];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefCoverage {
    pub area: String,
    pub counts: RefCounts,
    pub children: Vec<RefCoverage>,
}

/// The gate's answer: colour name, reasons (sorted), `valid_until`,
/// `last_sample_at`, `last_negative_at`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefStatus {
    pub colour: &'static str,
    pub reasons: Vec<Reason>,
    pub valid_until: Option<i64>,
    pub last_sample_at: Option<i64>,
    pub last_negative_at: Option<i64>,
}

/// Whether `area` is `prefix` or lies under it, by whole segments.
pub fn under(area: &str, prefix: &str) -> bool {
    area == prefix || (area.starts_with(prefix) && area[prefix.len()..].starts_with('/'))
}

fn floor_second(ms: i64) -> i64 {
    ms.div_euclid(1000) * 1000
}

/// Beijing time has whole-hour offsets, so its hours are UTC's hours.
fn floor_hour(ms: i64) -> i64 {
    ms.div_euclid(HOUR) * HOUR
}

pub struct Reference {
    pub policy: Policy,
    /// Registered now.
    pub residents: BTreeMap<PersonId, Person>,
    /// Everyone ever registered, as last registered.
    pub known: BTreeMap<PersonId, Person>,
    /// Area → (title, name).
    pub heads: BTreeMap<String, (String, String)>,
    records: Vec<Rec>,
    /// Tube → (result, log position, latest report time).
    results: BTreeMap<String, (TestResult, u64, i64)>,
    sites: BTreeMap<String, String>,
    pub rounds: Vec<RoundR>,
    exemptions: BTreeMap<u32, Ex>,
    next_exemption: u32,
    /// Person → log position of their latest clear.
    clears: BTreeMap<PersonId, u64>,
    seq: u64,
    /// The latest event time (retention's clock), and how many tubes were forgotten.
    clock: i64,
    forgotten_tubes: u64,
}

impl Reference {
    pub fn new(policy: Policy) -> Reference {
        Reference {
            policy,
            residents: BTreeMap::new(),
            known: BTreeMap::new(),
            heads: BTreeMap::new(),
            records: Vec::new(),
            results: BTreeMap::new(),
            sites: BTreeMap::new(),
            rounds: Vec::new(),
            exemptions: BTreeMap::new(),
            next_exemption: 1,
            clears: BTreeMap::new(),
            seq: 0,
            clock: i64::MIN,
            forgotten_tubes: 0,
        }
    }

    /// Retention before an event at `at` (any event but a register import):
    /// forgets the tubes untouched since the window before the latest event's
    /// whole hour, renaming them out of the way.
    pub fn advance(&mut self, at: i64) {
        self.clock = self.clock.max(at);
        let cutoff = floor_hour(self.clock) - MAX_AGE;
        let mut touched: BTreeMap<String, i64> = BTreeMap::new();
        for r in &self.records {
            let t = touched.entry(r.tube.clone()).or_insert(i64::MIN);
            *t = (*t).max(r.at);
        }
        for (tube, &(_, _, reported)) in &self.results {
            let t = touched.entry(tube.clone()).or_insert(i64::MIN);
            *t = (*t).max(reported);
        }
        let event = self.seq + 1;
        for (tube, t) in touched {
            if t >= cutoff || tube.contains('~') {
                continue;
            }
            self.forgotten_tubes += 1;
            let gone = format!("{tube}~{}", self.forgotten_tubes);
            for r in self.records.iter_mut().filter(|r| r.tube == tube) {
                r.tube.clone_from(&gone);
                r.forgotten = event;
            }
            if let Some(v) = self.results.remove(&tube) {
                self.results.insert(gone.clone(), v);
            }
            if let Some(v) = self.sites.remove(&tube) {
                self.sites.insert(gone, v);
            }
        }
    }

    /// Whether a round counts a record: not one whose tube was forgotten
    /// before the round was (re)counted from the tubes held.
    fn counted(r: &RoundR, x: &Rec) -> bool {
        x.seq > r.marked_from || x.forgotten > r.marked_from
    }

    /// Whether a closed round is archived at `now`.
    pub fn archived(&self, r: &RoundR, now: i64) -> bool {
        r.closed_at
            .is_some_and(|c| c + i64::from(self.policy.retention_days) * 24 * HOUR <= now)
    }

    fn tick(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Records held: those of tubes not forgotten.
    pub fn record_count(&self) -> u64 {
        self.records
            .iter()
            .filter(|r| r.forgotten == u64::MAX)
            .count() as u64
    }

    // ------------------------------------------------------------ register

    /// Upserts rows; returns (total, inserted, updated, unchanged).
    pub fn register(&mut self, rows: &[(PersonId, Person)]) -> (u64, u64, u64, u64) {
        self.tick();
        let (mut ins, mut upd, mut unch) = (0, 0, 0);
        for (pid, p) in rows {
            match self.residents.get(pid) {
                None => ins += 1,
                Some(old) if old == p => unch += 1,
                Some(_) => upd += 1,
            }
            self.residents.insert(*pid, p.clone());
            self.known.insert(*pid, p.clone());
        }
        (self.residents.len() as u64, ins, upd, unch)
    }

    pub fn delete(&mut self, pid: PersonId) -> Result<(), CommandError> {
        self.tick();
        self.residents
            .remove(&pid)
            .map(|_| ())
            .ok_or(CommandError::UnknownResident)
    }

    pub fn set_heads(&mut self, heads: &[(String, String, String)]) {
        self.tick();
        for (area, title, name) in heads {
            self.heads
                .insert(area.clone(), (title.clone(), name.clone()));
        }
    }

    /// The head of the person's own area node, else the nearest one above.
    pub fn head_for(&self, area: &str) -> Option<(String, String)> {
        let segments: Vec<&str> = area.split('/').collect();
        (1..=segments.len())
            .rev()
            .find_map(|n| self.heads.get(&segments[..n].join("/")).cloned())
    }

    // ------------------------------------------------------------- records

    fn time_bad(t: i64, now: i64) -> bool {
        t > now + FUTURE_SLACK || t < now - MAX_AGE
    }

    fn members(&self, tube: &str) -> usize {
        self.records.iter().filter(|r| r.tube == tube).count()
    }

    /// Judges a batch (person, tube, `collected_at`, site) in order.
    pub fn judge_records(
        &self,
        items: &[(PersonId, String, i64, String)],
        now: i64,
    ) -> Vec<Verdict> {
        let mut keys: BTreeSet<(String, PersonId)> = BTreeSet::new();
        let mut batch_members: BTreeMap<String, usize> = BTreeMap::new();
        let mut batch_site: BTreeMap<String, String> = BTreeMap::new();
        let mut out = Vec::new();
        for (pid, tube, collected, site) in items {
            if Self::time_bad(*collected, now) {
                out.push(Verdict::Rejected(RejectCode::InvalidTime));
                continue;
            }
            let key = (tube.clone(), *pid);
            let held = self
                .records
                .iter()
                .any(|r| r.tube == *tube && r.pid == *pid);
            if held || keys.contains(&key) {
                out.push(Verdict::Duplicate);
                continue;
            }
            let first_site = self.sites.get(tube).or_else(|| batch_site.get(tube));
            if first_site.is_some_and(|s| s != site) {
                out.push(Verdict::Rejected(RejectCode::TubeSiteConflict));
                continue;
            }
            let count = self.members(tube) + batch_members.get(tube).copied().unwrap_or(0);
            if count >= self.policy.pool_max as usize {
                out.push(Verdict::Rejected(RejectCode::TubeFull));
                continue;
            }
            keys.insert(key);
            *batch_members.entry(tube.clone()).or_default() += 1;
            batch_site
                .entry(tube.clone())
                .or_insert_with(|| site.clone());
            out.push(Verdict::Accepted {
                flag: !self.residents.contains_key(pid),
            });
        }
        out
    }

    /// Applies accepted records, in order, arrived at `now`.
    pub fn apply_records(&mut self, items: &[(PersonId, String, i64, String)], now: i64) {
        for (pid, tube, collected, site) in items {
            let seq = self.tick();
            self.sites
                .entry(tube.clone())
                .or_insert_with(|| site.clone());
            self.records.push(Rec {
                tube: tube.clone(),
                pid: *pid,
                collected: floor_second(*collected),
                at: *collected,
                arrived: now,
                seq,
                forgotten: u64::MAX,
            });
        }
    }

    /// Judges a batch of results (tube, result, `reported_at`).
    pub fn judge_results(&self, items: &[(String, TestResult, i64)], now: i64) -> Vec<Verdict> {
        let mut batch: BTreeMap<String, TestResult> = BTreeMap::new();
        let mut out = Vec::new();
        for (tube, result, reported) in items {
            if Self::time_bad(*reported, now) {
                out.push(Verdict::Rejected(RejectCode::InvalidTime));
                continue;
            }
            let prev = self
                .results
                .get(tube)
                .map(|r| r.0)
                .or_else(|| batch.get(tube).copied());
            match prev {
                Some(p) if p == *result => {
                    out.push(Verdict::Duplicate);
                    continue;
                }
                Some(_) => {
                    out.push(Verdict::Rejected(RejectCode::ConflictingResult));
                    continue;
                }
                None => {}
            }
            batch.insert(tube.clone(), *result);
            out.push(Verdict::Accepted {
                flag: self.members(tube) == 0,
            });
        }
        out
    }

    pub fn apply_results(&mut self, items: &[(String, TestResult, i64)]) {
        for (tube, result, reported) in items {
            let seq = self.tick();
            let r = self
                .results
                .entry(tube.clone())
                .or_insert((*result, seq, *reported));
            r.2 = r.2.max(*reported);
        }
    }

    pub fn clear(&mut self, pid: PersonId) {
        let seq = self.tick();
        self.clears.insert(pid, seq);
    }

    // ------------------------------------------------------------- rounds

    fn area_exists(&self, path: &str) -> bool {
        self.known.values().any(|p| under(&p.area, path))
    }

    pub fn create_round(
        &mut self,
        scope: &[String],
        opens: i64,
        deadline: i64,
    ) -> Result<u32, CommandError> {
        if scope.is_empty() {
            return Err(CommandError::EmptyScope);
        }
        if deadline <= opens {
            return Err(CommandError::InvalidWindow);
        }
        if let Some(s) = scope.iter().find(|s| !self.area_exists(s)) {
            return Err(CommandError::UnknownArea(s.clone()));
        }
        let created_seq = self.tick();
        let id = self.rounds.len() as u32 + 1;
        self.rounds.push(RoundR {
            id,
            scope: scope.to_vec(),
            opens,
            deadline,
            created_seq,
            created_deadline: deadline,
            marked_from: created_seq,
            closed_at: None,
            frozen: None,
            flipped: 0,
        });
        Ok(id)
    }

    pub fn round(&self, id: u32) -> &RoundR {
        &self.rounds[id as usize - 1]
    }

    /// Closes the round dated `at` (the scheduler dates its closes at the
    /// deadline, a little after it); returns how many people the close
    /// flagged: those missing as of `at`, counting only records that had
    /// arrived by then.
    pub fn close(&mut self, id: u32, at: i64) -> u64 {
        let seq = self.tick();
        let ix = id as usize - 1;
        if self.rounds[ix].closed_at.is_some() {
            return 0;
        }
        if at < self.rounds[ix].deadline {
            self.rounds[ix].deadline = at;
            self.rounds[ix].marked_from = seq;
        }
        let scope: BTreeSet<PersonId> = self.in_scope(&self.rounds[ix], None).into_iter().collect();
        let flipped = scope
            .iter()
            .filter(|p| self.state_as_of(&self.rounds[ix], **p, at) == St::Missing)
            .count() as u64;
        let r = &mut self.rounds[ix];
        r.frozen = Some(scope);
        r.closed_at = Some(at);
        r.flipped = flipped;
        flipped
    }

    pub fn due_rounds(&self, now: i64) -> Vec<u32> {
        self.rounds
            .iter()
            .filter(|r| r.closed_at.is_none() && r.deadline <= now)
            .map(|r| r.id)
            .collect()
    }

    fn in_round(&self, r: &RoundR, pid: PersonId) -> bool {
        match &r.frozen {
            Some(f) => f.contains(&pid),
            None => self
                .residents
                .get(&pid)
                .is_some_and(|p| r.scope.iter().any(|s| under(&p.area, s))),
        }
    }

    /// In-scope people (under `area` when given), by ID.
    pub fn in_scope(&self, r: &RoundR, area: Option<&str>) -> Vec<PersonId> {
        self.known
            .iter()
            .filter(|(pid, p)| self.in_round(r, **pid) && area.is_none_or(|a| under(&p.area, a)))
            .map(|(pid, _)| *pid)
            .collect()
    }

    fn exempt_for(&self, pid: PersonId, deadline: i64) -> bool {
        self.exemptions
            .values()
            .any(|e| e.pid == pid && e.from <= deadline && deadline <= e.until)
    }

    fn exempt_at(&self, pid: PersonId, t: i64) -> bool {
        self.exemptions
            .values()
            .any(|e| e.pid == pid && e.from <= t && t <= e.until)
    }

    pub fn state(&self, r: &RoundR, pid: PersonId) -> St {
        self.state_as_of(r, pid, i64::MAX)
    }

    /// The state counting only records that had arrived by `as_of`.
    fn state_as_of(&self, r: &RoundR, pid: PersonId, as_of: i64) -> St {
        // Records held when the round was created count as arrived by its
        // deadline at the latest (see the module's notes).
        let arrived = |x: &Rec| {
            if x.seq < r.created_seq {
                x.arrived.min(r.created_deadline)
            } else {
                x.arrived
            }
        };
        let mine: Vec<&Rec> = self
            .records
            .iter()
            .filter(|x| x.pid == pid && arrived(x) <= as_of && Self::counted(r, x))
            .collect();
        let inside: Vec<&&Rec> = mine
            .iter()
            .filter(|x| r.opens <= x.at && x.at <= r.deadline)
            .collect();
        if let Some(first) = inside.iter().map(|x| arrived(x)).min() {
            let late = r.closed_at.is_some_and(|c| first > c);
            return St::Sampled { late };
        }
        if mine.iter().any(|x| x.at > r.deadline) {
            return St::MadeUp;
        }
        if self.exempt_for(pid, r.deadline) {
            return St::Exempt;
        }
        St::Missing
    }

    pub fn counts(&self, r: &RoundR, area: Option<&str>) -> RefCounts {
        let mut c = [0u64; 6];
        for pid in self.in_scope(r, area) {
            c[0] += 1;
            match self.state(r, pid) {
                St::Sampled { late } => {
                    c[1] += 1;
                    if late {
                        c[2] += 1;
                    }
                }
                St::MadeUp => c[3] += 1,
                St::Exempt => c[4] += 1,
                St::Missing => c[5] += 1,
            }
        }
        c
    }

    /// The missing list: by area, household, name (plain string order), then ID.
    pub fn missing(&self, r: &RoundR, area: Option<&str>) -> Vec<PersonId> {
        let mut people: Vec<PersonId> = self
            .in_scope(r, area)
            .into_iter()
            .filter(|p| self.state(r, *p) == St::Missing)
            .collect();
        people.sort_by(|a, b| {
            let (pa, pb) = (&self.known[a], &self.known[b]);
            (&pa.area, &pa.household, &pa.name, a).cmp(&(&pb.area, &pb.household, &pb.name, b))
        });
        people
    }

    pub fn coverage(&self, r: &RoundR, area: &str, depth: u32) -> RefCoverage {
        let mut children = Vec::new();
        if depth > 0 {
            let level = area.split('/').count() + 1;
            let kids: BTreeSet<String> = self
                .in_scope(r, Some(area))
                .into_iter()
                .map(|p| &self.known[&p].area)
                .filter(|a| a.as_str() != area)
                .map(|a| a.split('/').take(level).collect::<Vec<_>>().join("/"))
                .collect();
            children = kids
                .iter()
                .map(|k| self.coverage(r, k, depth - 1))
                .collect();
        }
        RefCoverage {
            area: area.to_owned(),
            counts: self.counts(r, Some(area)),
            children,
        }
    }

    /// (hour, people) from the window's first hour to its last, or the current one.
    pub fn progress(&self, r: &RoundR, area: Option<&str>, now: i64) -> Vec<(i64, u64)> {
        let end = if r.closed_at.is_some() || now >= r.deadline {
            r.deadline
        } else {
            // Samples may be collected up to five minutes ahead of now.
            (now + FUTURE_SLACK).min(r.deadline).max(r.opens)
        };
        let mut buckets: BTreeMap<i64, u64> = BTreeMap::new();
        // A round closed before it opened has an empty window; it still
        // shows its opening hour (with nobody in it).
        let mut h = floor_hour(r.opens);
        while h <= floor_hour(end).max(floor_hour(r.opens)) {
            buckets.insert(h, 0);
            h += HOUR;
        }
        for pid in self.in_scope(r, area) {
            let first = self
                .records
                .iter()
                .filter(|x| {
                    x.pid == pid && r.opens <= x.at && x.at <= r.deadline && Self::counted(r, x)
                })
                .map(|x| x.at)
                .min();
            if let Some(f) = first {
                *buckets.get_mut(&floor_hour(f)).expect("inside the window") += 1;
            }
        }
        buckets.into_iter().collect()
    }

    // --------------------------------------------------------- exemptions

    pub fn exempt(&mut self, pid: PersonId, from: i64, until: i64) -> Result<u32, CommandError> {
        if until < from {
            return Err(CommandError::InvalidWindow);
        }
        self.tick();
        let id = self.next_exemption;
        self.next_exemption += 1;
        self.exemptions.insert(id, Ex { pid, from, until });
        Ok(id)
    }

    pub fn unexempt(&mut self, id: u32) -> Result<(), CommandError> {
        self.tick();
        self.exemptions
            .remove(&id)
            .map(|_| ())
            .ok_or(CommandError::UnknownExemption)
    }

    // ------------------------------------------------------------- status

    fn result_of(&self, tube: &str) -> Option<(TestResult, u64)> {
        self.results.get(tube).map(|&(r, seq, _)| (r, seq))
    }

    fn makeup_negative(&self, r: &RoundR, pid: PersonId) -> bool {
        self.records.iter().any(|x| {
            x.pid == pid
                && x.at > r.deadline
                && Self::counted(r, x)
                && self
                    .result_of(&x.tube)
                    .is_some_and(|(res, _)| res == TestResult::Negative)
        })
    }

    pub fn still_flagged(&self, r: &RoundR, pid: PersonId) -> bool {
        if r.closed_at.is_none() || !self.in_round(r, pid) {
            return false;
        }
        match self.state(r, pid) {
            St::Missing => true,
            St::MadeUp => {
                self.policy.restore_on == RestoreOn::NegativeResult
                    && !self.makeup_negative(r, pid)
                    && !self.exempt_for(pid, r.deadline)
            }
            _ => false,
        }
    }

    pub fn last_sample_at(&self, pid: PersonId) -> Option<i64> {
        self.records
            .iter()
            .filter(|x| x.pid == pid)
            .map(|x| x.collected)
            .max()
    }

    fn last_negative_at(&self, pid: PersonId) -> Option<i64> {
        self.records
            .iter()
            .filter(|x| {
                x.pid == pid
                    && self
                        .result_of(&x.tube)
                        .is_some_and(|(r, _)| r == TestResult::Negative)
            })
            .map(|x| x.collected)
            .max()
    }

    fn no_recent_sample(&self, pid: PersonId, t: i64) -> bool {
        let Some(hours) = self.policy.max_sample_age_hours else {
            return false;
        };
        let stale = self
            .last_sample_at(pid)
            .is_none_or(|last| t - last > i64::from(hours) * HOUR);
        stale && !self.exempt_at(pid, t)
    }

    pub fn status(&self, pid: PersonId, now: i64) -> RefStatus {
        let mut reasons: BTreeSet<Reason> = BTreeSet::new();
        let plain = |code| Reason {
            code,
            round_id: None,
        };
        for r in &self.rounds {
            if self.still_flagged(r, pid) {
                reasons.insert(Reason {
                    code: ReasonCode::MissedRound,
                    round_id: Some(r.id.to_string()),
                });
            }
        }
        if let Some(n) = self.policy.red_after_consecutive_misses.filter(|&n| n > 0) {
            let mut mine: Vec<&RoundR> = self
                .rounds
                .iter()
                .filter(|r| r.closed_at.is_some() && self.in_round(r, pid))
                .collect();
            mine.sort_by_key(|r| (r.deadline, r.id));
            let n = n as usize;
            if mine.len() >= n
                && mine[mine.len() - n..]
                    .iter()
                    .all(|r| self.still_flagged(r, pid))
            {
                reasons.insert(plain(ReasonCode::RepeatedMisses));
            }
        }
        if self.no_recent_sample(pid, now) {
            reasons.insert(plain(ReasonCode::NoRecentSample));
        }
        for x in self.records.iter().filter(|x| x.pid == pid) {
            let Some((TestResult::Positive, result_seq)) = self.result_of(&x.tube) else {
                continue;
            };
            if self.members(&x.tube) == 1 {
                let applied = result_seq.max(x.seq);
                if self.clears.get(&pid).is_none_or(|&c| c < applied) {
                    reasons.insert(plain(ReasonCode::Positive));
                }
            } else {
                let later_negative = self.records.iter().any(|y| {
                    y.pid == pid
                        && y.collected > x.collected
                        && self
                            .result_of(&y.tube)
                            .is_some_and(|(r, _)| r == TestResult::Negative)
                });
                if !later_negative {
                    reasons.insert(plain(ReasonCode::PoolPositive));
                }
            }
        }
        let codes: Vec<ReasonCode> = reasons.iter().map(|r| r.code).collect();
        let colour = if codes.contains(&ReasonCode::Positive)
            || codes.contains(&ReasonCode::RepeatedMisses)
        {
            "red"
        } else if codes.is_empty() {
            "green"
        } else {
            "yellow"
        };
        RefStatus {
            colour,
            reasons: reasons.into_iter().collect(),
            valid_until: self.valid_until(pid, now),
            last_sample_at: self.last_sample_at(pid),
            last_negative_at: self.last_negative_at(pid),
        }
    }

    /// The next moment the answer changes by itself: only `no_recent_sample`
    /// turning on or off does. A candidate equal to `now` counts: at the last
    /// instant of an answer it still changes a millisecond later.
    fn valid_until(&self, pid: PersonId, now: i64) -> Option<i64> {
        let hours = self.policy.max_sample_age_hours?;
        let cur = self.no_recent_sample(pid, now);
        let mut cands = Vec::new();
        if let Some(last) = self.last_sample_at(pid) {
            cands.push(last + i64::from(hours) * HOUR);
        }
        for e in self.exemptions.values().filter(|e| e.pid == pid) {
            cands.push(e.from);
            cands.push(e.until);
        }
        cands.retain(|&c| c >= now);
        cands.sort_unstable();
        cands.into_iter().find(|&c| {
            self.no_recent_sample(pid, c) != cur || self.no_recent_sample(pid, c + 1) != cur
        })
    }

    /// Repeat missers, counted naively: for everyone ever registered under
    /// `area`, the closed rounds that covered them ordered by (deadline,
    /// id), the last `last` of those, and which of them still flag them;
    /// kept when at least `min`. By misses (most first), then area,
    /// household, name, ID.
    pub fn repeat_missing(
        &self,
        area: Option<&str>,
        last: usize,
        min: usize,
    ) -> Vec<(PersonId, Vec<u32>)> {
        let mut closed: Vec<&RoundR> = self
            .rounds
            .iter()
            .filter(|r| r.closed_at.is_some())
            .collect();
        closed.sort_by_key(|r| (r.deadline, r.id));
        let mut out: Vec<(PersonId, Vec<u32>)> = self
            .known
            .iter()
            .filter(|(_, p)| area.is_none_or(|a| under(&p.area, a)))
            .filter_map(|(pid, _)| {
                let covering: Vec<&&RoundR> =
                    closed.iter().filter(|r| self.in_round(r, *pid)).collect();
                let recent = &covering[covering.len().saturating_sub(last)..];
                let flagged: Vec<u32> = recent
                    .iter()
                    .filter(|r| self.still_flagged(r, *pid))
                    .map(|r| r.id)
                    .collect();
                (flagged.len() >= min.max(1)).then_some((*pid, flagged))
            })
            .collect();
        out.sort_by(|(a, fa), (b, fb)| {
            let (pa, pb) = (&self.known[a], &self.known[b]);
            fb.len().cmp(&fa.len()).then_with(|| {
                (&pa.area, &pa.household, &pa.name, a).cmp(&(&pb.area, &pb.household, &pb.name, b))
            })
        });
        out
    }

    /// The resident view's `flagged_rounds`, in round order; None when not registered.
    pub fn flagged_rounds(&self, pid: PersonId) -> Option<Vec<String>> {
        self.residents.get(&pid)?;
        Some(
            self.rounds
                .iter()
                .filter(|r| self.still_flagged(r, pid))
                .map(|r| r.id.to_string())
                .collect(),
        )
    }
}

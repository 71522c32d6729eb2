//! The compliance engine: every piece of state the API answers from — the
//! register and area tree, tubes and results, rounds, exemptions and
//! statuses — derived from [`Event`]s, in memory. No I/O, no async, no clock
//! reads: every event and query carries its own `now`.
//!
//! Depends on `domain` only. The store logs events and replays them here;
//! the HTTP layer reads through a [`SharedEngine`].

pub mod bitset;
pub mod campaign;
mod chunked;
pub mod clock;
pub mod event;
mod final_counts;
mod index;
pub mod register;
pub mod rounds;
mod slots;
pub mod snapshot;
pub mod status;
pub mod tubes;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use parking_lot::RwLock;
use rustc_hash::FxHashMap;

pub use event::{
    Applied, Command, CommandError, Event, ExemptionSpec, NewExemption, PackedRecords, Prepared,
    RecordItem, RecordRef, RejectCode, ResultItem, RoundSpec, Verdict,
};
pub use register::{Head, Register, ResidentRef, Slot};
pub use rounds::{Counts, CoverageNode, MissingPerson, Round, RoundState};
pub use status::{Reason, Status};

use crate::domain::{ExemptionReason, PersonId, ReasonCode, TestResult, Timestamp, TubeId};
use bitset::Bitset;
use chunked::Chunked;
use register::NONE;
use tubes::{Member, Tubes};

/// The engine behind its lock. Readers (queries, gate misses) share it; the
/// store's single writer thread takes it exclusively only to apply an event
/// that is already durable.
pub type SharedEngine = Arc<RwLock<Engine>>;

/// When a `missed_round` flag clears after a make-up sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RestoreOn {
    #[default]
    #[serde(rename = "sample")]
    Sample,
    #[serde(rename = "negative_result")]
    NegativeResult,
}

impl std::str::FromStr for RestoreOn {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sample" => Ok(RestoreOn::Sample),
            "negative_result" => Ok(RestoreOn::NegativeResult),
            other => Err(format!(
                "restore_on must be `sample` or `negative_result`, not `{other}`"
            )),
        }
    }
}

/// The policies of docs/api.md "Policy".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub restore_on: RestoreOn,
    pub max_sample_age_hours: Option<u32>,
    pub red_after_consecutive_misses: Option<u32>,
    pub pool_max: u32,
    /// Days after its close a round is archived (Retention); 0: at the close.
    pub retention_days: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            restore_on: RestoreOn::Sample,
            max_sample_age_hours: None,
            red_after_consecutive_misses: None,
            pool_max: 20,
            retention_days: 30,
        }
    }
}

/// Records older than this are refused (`invalid_time`), so the engine never
/// needs to remember tubes beyond it for duplicate detection.
pub const ACCEPT_WINDOW_MS: i64 = 30 * 24 * 3600 * 1000;
/// How far in the future a `collected_at` or `reported_at` may be (clock skew).
pub const FUTURE_SLACK_MS: i64 = 5 * 60 * 1000;
/// How often (on the events' clock) retention looks for tubes past the
/// window and rounds to archive.
pub const PRUNE_EVERY_MS: i64 = 3600 * 1000;
const DAY_MS: i64 = 24 * 3600 * 1000;

/// Compact per-person times: whole seconds since 2000-01-01 UTC, 0 = none.
/// Sample times are kept to the second.
pub mod secs {
    use crate::domain::Timestamp;
    const EPOCH_2000_S: i64 = 946_684_800;

    pub fn of(t: Timestamp) -> u32 {
        (t.as_millis().div_euclid(1000) - EPOCH_2000_S).clamp(1, i64::from(u32::MAX)) as u32
    }

    pub fn to_ts(s: u32) -> Option<Timestamp> {
        (s != 0).then(|| Timestamp::from_millis((i64::from(s) + EPOCH_2000_S) * 1000))
    }

    pub fn millis(s: u32) -> i64 {
        (i64::from(s) + EPOCH_2000_S) * 1000
    }
}

/// A granted exemption.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Exemption {
    pub id: u32,
    pub slot: Slot,
    pub person_id: PersonId,
    pub reason: ExemptionReason,
    pub from: Timestamp,
    pub until: Timestamp,
    pub note: String,
}

/// A positive tube a person was in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct PositiveHit {
    /// The tube's index while it is held (`NONE` once retention dropped it).
    tube: u32,
    /// The tube held more than one person (a pool): cleared by a later negative.
    pooled: bool,
    collected: u32,
    /// Cleared by an admin while it was a single-person positive.
    cleared: bool,
}

/// Records and results judged into a group commit that is not yet durable,
/// so later batches of the same group see them (duplicates, pool sizes, the
/// tube's first site, a result already given).
///
/// One entry per tube (its first site and its people, a pool's few), so a
/// record costs one lookup here and an allocation only for a new tube.
#[derive(Debug, Default)]
pub struct Overlay {
    tubes: FxHashMap<TubeId, OverlayTube>,
    results: FxHashMap<TubeId, TestResult>,
}

/// A tube's records in the overlay.
#[derive(Debug)]
struct OverlayTube {
    site: Arc<str>,
    people: Vec<PersonId>,
}

impl Overlay {
    pub fn clear(&mut self) {
        *self = Overlay::default();
    }
}

/// The resident view of `GET /v1/residents/{id}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResidentView {
    pub person_id: PersonId,
    pub name: String,
    pub phone: String,
    pub area: String,
    pub household: String,
    pub last_sample_at: Option<Timestamp>,
    pub flagged_rounds: Vec<String>,
}

/// A copy of the engine that a snapshot encodes, made by [`Engine::frozen`]
/// without copying the large arrays. It can only be encoded: it leaves out
/// the tube ID index, which a snapshot does not hold either.
pub struct Frozen(Engine);

impl Frozen {
    pub fn encode_snapshot(&self) -> Vec<u8> {
        self.0.encode_snapshot()
    }
}

/// All compliance state.
pub struct Engine {
    policy: Policy,
    pool: Arc<rayon::ThreadPool>,
    /// Shared with a snapshot being encoded (see [`Engine::frozen`]): the
    /// register changes only on imports and unknown IDs, so it is copied
    /// (by [`Engine::register_mut`]) only when one of those meets a
    /// snapshot in flight.
    register: Arc<Register>,
    tubes: Tubes,
    /// Per person (by slot): the latest sample's and the latest negative
    /// result's collection time (seconds on the engine's clock, 0 for none).
    /// Chunked, so a snapshot's copy shares them and a write after it copies
    /// only the chunk it lands in.
    last_sample: Chunked<u32>,
    last_negative: Chunked<u32>,
    positives: FxHashMap<Slot, Vec<PositiveHit>>,
    rounds: Vec<Round>,
    /// Closed rounds by (deadline, id): the order `repeated_misses` counts in.
    closed_order: Vec<u32>,
    exemptions: BTreeMap<u32, Exemption>,
    exemptions_of: FxHashMap<Slot, Vec<u32>>,
    next_exemption: u32,
    records: u64,
    /// The latest event time applied (ms): retention's clock, so a replay
    /// prunes exactly where the live engine did.
    clock: i64,
    /// When (on `clock`) retention runs next.
    next_prune: i64,
}

impl Engine {
    /// An empty engine whose parallel work runs on `pool`.
    pub fn new(policy: Policy, pool: Arc<rayon::ThreadPool>) -> Engine {
        Engine {
            policy,
            pool,
            register: Arc::default(),
            tubes: Tubes::default(),
            last_sample: Chunked::default(),
            last_negative: Chunked::default(),
            positives: FxHashMap::default(),
            rounds: Vec::new(),
            closed_order: Vec::new(),
            exemptions: BTreeMap::new(),
            exemptions_of: FxHashMap::default(),
            next_exemption: 1,
            records: 0,
            clock: i64::MIN,
            next_prune: i64::MIN,
        }
    }

    /// The dedicated rayon pool for round closes, coverage and sweeps.
    pub fn build_pool(threads: usize) -> Arc<rayon::ThreadPool> {
        Arc::new(
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .thread_name(|i| format!("rollcall-engine-{i}"))
                .build()
                .expect("building the engine's rayon pool"),
        )
    }

    /// A copy of the whole state for a snapshot to encode off the writer
    /// thread, taken between two events, without copying what is large:
    /// the register is shared (copied on write by the rare event that
    /// changes it while the snapshot is encoded); the tube storage and the
    /// per-person latest sample and negative are chunked, and share their
    /// chunks (the writer copies a chunk only when it writes to it while the
    /// snapshot still holds it); the rounds' sets and hours are shared (each
    /// copied by the writer only if it changes it meanwhile). The rest is
    /// small and copied. `&mut`, because sharing marks the chunks shared.
    pub fn frozen(&mut self) -> Frozen {
        Frozen(Engine {
            policy: self.policy,
            pool: Arc::clone(&self.pool),
            register: Arc::clone(&self.register),
            tubes: self.tubes.frozen(),
            last_sample: self.last_sample.share(),
            last_negative: self.last_negative.share(),
            positives: self.positives.clone(),
            rounds: self.rounds.clone(),
            closed_order: self.closed_order.clone(),
            exemptions: self.exemptions.clone(),
            exemptions_of: self.exemptions_of.clone(),
            next_exemption: self.next_exemption,
            records: self.records,
            clock: self.clock,
            next_prune: self.next_prune,
        })
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn pool(&self) -> &Arc<rayon::ThreadPool> {
        &self.pool
    }

    pub fn register(&self) -> &Register {
        &self.register
    }

    /// How many residents are registered (moved-out ones excluded).
    pub fn resident_count(&self) -> u64 {
        self.register.active_count()
    }

    /// How many area nodes have a responsible head.
    pub fn head_count(&self) -> u64 {
        self.register.heads_count()
    }

    /// How many accepted records are held (duplicates excluded; those
    /// retention dropped no longer count).
    pub fn record_count(&self) -> u64 {
        self.records
    }

    /// Heap bytes of the tube storage (members, tube rows, IDs and their
    /// index): what the records inside the window cost.
    pub fn tube_heap_bytes(&self) -> usize {
        self.tubes.heap_bytes()
    }

    pub fn rounds(&self) -> &[Round] {
        &self.rounds
    }

    pub fn round(&self, id: u32) -> Option<&Round> {
        id.checked_sub(1).and_then(|i| self.rounds.get(i as usize))
    }

    pub fn exemption(&self, id: u32) -> Option<&Exemption> {
        self.exemptions.get(&id)
    }

    /// Open rounds whose deadline has passed: the scheduler closes them.
    pub fn due_rounds(&self, now: Timestamp) -> Vec<u32> {
        self.rounds
            .iter()
            .filter(|r| r.closed_at.is_none() && r.deadline <= now)
            .map(|r| r.id)
            .collect()
    }

    /// The earliest deadline of an open round, for the scheduler's sleep.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.rounds
            .iter()
            .filter(|r| r.closed_at.is_none())
            .map(|r| r.deadline)
            .min()
    }

    // ------------------------------------------------------------ judging

    fn time_ok(t: Timestamp, now: Timestamp) -> bool {
        let ms = t.as_millis();
        ms <= now.as_millis() + FUTURE_SLACK_MS && ms >= now.as_millis() - ACCEPT_WINDOW_MS
    }

    /// Judges a batch of records in order, against the engine and the
    /// overlay of batches judged before it in the same group; accepted ones
    /// are added to the overlay. Checks, in docs/api.md's order after the
    /// syntactic ones: time, duplicate, site, pool size.
    pub fn judge_records(
        &self,
        items: &[RecordItem],
        now: Timestamp,
        overlay: &mut Overlay,
    ) -> Vec<Verdict> {
        // Both indexes looked up for the whole batch first (see `statuses`).
        let found: Vec<(Option<u32>, Option<Slot>)> = items
            .iter()
            .map(|it| {
                (
                    self.tubes.find(it.tube_id.as_str()),
                    self.register.slot(it.person_id),
                )
            })
            .collect();
        items
            .iter()
            .zip(found)
            .map(|(it, (tube, slot))| {
                if !Self::time_ok(it.collected_at, now) {
                    return Verdict::Rejected(RejectCode::InvalidTime);
                }
                let in_engine = matches!((tube, slot), (Some(t), Some(s)) if self.tubes.has(t, s));
                let pending = overlay.tubes.get(&it.tube_id);
                if in_engine || pending.is_some_and(|t| t.people.contains(&it.person_id)) {
                    return Verdict::Duplicate;
                }
                let first_site = tube
                    .map(|t| self.tubes.site_of(t))
                    .filter(|&s| s != NONE)
                    .map(|s| self.tubes.site_name(s))
                    .or_else(|| pending.map(|t| &*t.site));
                if first_site.is_some_and(|s| s != &*it.site) {
                    return Verdict::Rejected(RejectCode::TubeSiteConflict);
                }
                let held = tube.map_or(0, |t| self.tubes.members_len(t))
                    + pending.map_or(0, |t| t.people.len() as u32);
                if held >= self.policy.pool_max {
                    return Verdict::Rejected(RejectCode::TubeFull);
                }
                match overlay.tubes.get_mut(&it.tube_id) {
                    Some(t) => t.people.push(it.person_id),
                    None => {
                        overlay.tubes.insert(
                            it.tube_id.clone(),
                            OverlayTube {
                                site: it.site.clone(),
                                people: vec![it.person_id],
                            },
                        );
                    }
                }
                Verdict::Accepted {
                    flag: !slot.is_some_and(|s| self.register.is_active(s)),
                }
            })
            .collect()
    }

    /// Judges a batch of results: time, then the same result again
    /// (duplicate) or a different one (`conflicting_result`).
    pub fn judge_results(
        &self,
        items: &[ResultItem],
        now: Timestamp,
        overlay: &mut Overlay,
    ) -> Vec<Verdict> {
        items
            .iter()
            .map(|it| {
                if !Self::time_ok(it.reported_at, now) {
                    return Verdict::Rejected(RejectCode::InvalidTime);
                }
                let tube = self.tubes.find(it.tube_id.as_str());
                let prev = tube
                    .and_then(|t| self.tubes.result(t))
                    .or_else(|| overlay.results.get(&it.tube_id).copied());
                match prev {
                    Some(p) if p == it.result => return Verdict::Duplicate,
                    Some(_) => return Verdict::Rejected(RejectCode::ConflictingResult),
                    None => {}
                }
                overlay.results.insert(it.tube_id.clone(), it.result);
                let has_records = tube.is_some_and(|t| self.tubes.members_len(t) > 0)
                    || overlay.tubes.contains_key(&it.tube_id);
                Verdict::Accepted { flag: !has_records }
            })
            .collect()
    }

    /// Checks a command against the current state and turns it into the
    /// event to log. Nothing changes until that event is applied.
    pub fn prepare(&self, cmd: Command, now: Timestamp) -> Result<(Event, Prepared), CommandError> {
        match cmd {
            Command::Register(rows) => {
                let (inserted, updated, unchanged) = self.register.diff_register(&rows);
                let total = self.register.active_count() + inserted;
                Ok((
                    Event::Register { rows, at: now },
                    Prepared::Import {
                        total,
                        inserted,
                        updated,
                        unchanged,
                    },
                ))
            }
            Command::Heads(rows) => {
                let (inserted, updated, unchanged) = self.register.diff_heads(&rows);
                let total = self.register.heads_count() + inserted;
                Ok((
                    Event::Heads { rows, at: now },
                    Prepared::Import {
                        total,
                        inserted,
                        updated,
                        unchanged,
                    },
                ))
            }
            Command::ResidentDelete(person_id) => {
                let active = self
                    .register
                    .slot(person_id)
                    .is_some_and(|s| self.register.is_active(s));
                if !active {
                    return Err(CommandError::UnknownResident);
                }
                Ok((Event::ResidentDelete { person_id, at: now }, Prepared::Done))
            }
            Command::RoundCreate {
                name,
                scope,
                opens_at,
                deadline,
            } => {
                if scope.is_empty() {
                    return Err(CommandError::EmptyScope);
                }
                if deadline <= opens_at {
                    return Err(CommandError::InvalidWindow);
                }
                if let Some(p) = scope.iter().find(|p| !self.register.area_exists(p)) {
                    return Err(CommandError::UnknownArea(p.to_string()));
                }
                let id = self.rounds.len() as u32 + 1;
                Ok((
                    Event::RoundCreate(RoundSpec {
                        id,
                        name,
                        scope,
                        opens_at,
                        deadline,
                        created_at: now,
                    }),
                    Prepared::RoundId(id),
                ))
            }
            Command::RoundClose { id, at } => {
                self.round(id).ok_or(CommandError::UnknownRound)?;
                let at = at.map_or(now, |t| t.min(now));
                Ok((Event::RoundClose { id, at }, Prepared::Done))
            }
            Command::ExemptionCreate {
                person_id,
                reason,
                from,
                until,
                note,
            } => {
                if until < from {
                    return Err(CommandError::InvalidWindow);
                }
                let id = self.next_exemption;
                Ok((
                    Event::ExemptionCreate(ExemptionSpec {
                        id,
                        person_id,
                        reason,
                        from,
                        until,
                        note,
                        created_at: now,
                    }),
                    Prepared::ExemptionId(id),
                ))
            }
            Command::ExemptionDelete { id } => {
                self.exemptions
                    .get(&id)
                    .ok_or(CommandError::UnknownExemption)?;
                Ok((Event::ExemptionDelete { id, at: now }, Prepared::Done))
            }
            Command::Clear { person_id, note } => Ok((
                Event::Clear {
                    person_id,
                    note,
                    at: now,
                },
                Prepared::Done,
            )),
            Command::ExemptionImport(_) => Err(CommandError::ManyEvents),
        }
    }

    /// [`Engine::prepare`] for any command, including those that log several
    /// events (an exemptions import: one event per exemption, ids in file
    /// order). The store writes them in one transaction.
    pub fn prepare_all(
        &self,
        cmd: Command,
        now: Timestamp,
    ) -> Result<(Vec<Event>, Prepared), CommandError> {
        match cmd {
            Command::ExemptionImport(rows) => {
                if rows.iter().any(|r| r.until < r.from) {
                    return Err(CommandError::InvalidWindow);
                }
                let first = self.next_exemption;
                let (events, ids) = rows
                    .into_iter()
                    .zip(first..)
                    .map(|(r, id)| {
                        let spec = ExemptionSpec {
                            id,
                            person_id: r.person_id,
                            reason: r.reason,
                            from: r.from,
                            until: r.until,
                            note: r.note,
                            created_at: now,
                        };
                        (Event::ExemptionCreate(spec), id)
                    })
                    .unzip();
                Ok((events, Prepared::ExemptionIds(ids)))
            }
            other => self.prepare(other, now).map(|(e, p)| (vec![e], p)),
        }
    }

    // ----------------------------------------------------------- applying

    /// A replay's way in for a long run of register imports: the parts are
    /// upserted as they are decoded, and [`Engine::register_done`] restores
    /// tree order once. The same state as applying each import as an
    /// [`Event::Register`] (or all of them as one). Nothing may read the
    /// engine between the first part and `register_done`.
    pub fn register_part(&mut self, rows: &register::PackedRows) {
        self.register_mut().upsert_unordered(rows.iter());
    }

    /// Ends a run of [`Engine::register_part`] calls.
    pub fn register_done(&mut self) {
        self.register_mut().reorder();
        self.grow_people();
    }

    /// Room for `n` more residents (a replay knows how many are coming).
    pub fn reserve_register(&mut self, n: usize) {
        self.register_mut().reserve(n);
    }

    /// The register, to change: copied first if a snapshot being encoded
    /// still shares it.
    fn register_mut(&mut self) -> &mut Register {
        Arc::make_mut(&mut self.register)
    }

    fn grow_people(&mut self) {
        let n = self.register.slots();
        self.last_sample.grow(n, 0);
        self.last_negative.grow(n, 0);
    }

    fn intern_person(&mut self, id: PersonId) -> Slot {
        if let Some(s) = self.register.slot(id) {
            return s;
        }
        let s = self.register_mut().intern(id);
        self.grow_people();
        s
    }

    /// Applies one durable event. Returns who may have changed status.
    pub fn apply(&mut self, event: &Event) -> Applied {
        // Register imports leave retention's clock alone: a replay hands
        // them over in parts (`register_part`) that carry no time.
        if !matches!(event, Event::Register { .. }) {
            self.tick(event.at());
        }
        let mut out = Applied::default();
        match event {
            Event::Register { rows, .. } => {
                self.register_mut().upsert(rows);
                self.grow_people();
            }
            Event::Heads { rows, .. } => self.register_mut().set_heads(rows),
            Event::ResidentDelete { person_id, .. } => {
                self.register_mut().deactivate(*person_id);
            }
            Event::Records { arrived_at, items } => {
                self.apply_records(
                    *arrived_at,
                    items.iter().map(RecordRef::from),
                    &mut out.changed,
                );
            }
            Event::Results { items, .. } => self.apply_results(items, &mut out.changed),
            Event::RoundCreate(spec) => self.create_round(spec),
            Event::RoundClose { id, at } => {
                let (flipped, changed) = self.close_round(*id, *at);
                out.flipped = flipped;
                out.changed = changed;
                // Already one entry per person; sorting half a million of
                // them would cost more than the close.
                return out;
            }
            Event::ExemptionCreate(spec) => {
                let slot = self.intern_person(spec.person_id);
                self.exemption_change(slot, |e| {
                    e.exemptions.insert(
                        spec.id,
                        Exemption {
                            id: spec.id,
                            slot,
                            person_id: spec.person_id,
                            reason: spec.reason,
                            from: spec.from,
                            until: spec.until,
                            note: spec.note.clone(),
                        },
                    );
                    e.exemptions_of.entry(slot).or_default().push(spec.id);
                });
                self.next_exemption = self.next_exemption.max(spec.id + 1);
                out.changed.push(spec.person_id);
            }
            Event::ExemptionDelete { id, .. } => {
                if let Some(slot) = self.exemptions.get(id).map(|e| e.slot) {
                    let mut gone = None;
                    self.exemption_change(slot, |e| {
                        gone = e.exemptions.remove(id);
                        if let Some(v) = e.exemptions_of.get_mut(&slot) {
                            v.retain(|x| x != id);
                        }
                    });
                    out.changed.extend(gone.map(|e| e.person_id));
                }
            }
            Event::Clear { person_id, .. } => {
                if let Some(slot) = self.register.slot(*person_id)
                    && let Some(hits) = self.positives.get_mut(&slot)
                {
                    for h in hits {
                        h.cleared = true;
                    }
                }
                out.changed.push(*person_id);
            }
        }
        out.changed.sort_unstable();
        out.changed.dedup();
        out
    }

    /// A replay's way in for one logged batch of records: the same as
    /// applying it as an [`Event::Records`], without the list of people
    /// changed (nobody is told during a replay).
    pub fn replay_records(&mut self, arrived_at: Timestamp, records: &PackedRecords) {
        self.tick(arrived_at);
        let mut changed = Vec::new();
        self.apply_records(arrived_at, records.iter(), &mut changed);
    }

    fn apply_records<'a>(
        &mut self,
        arrived_at: Timestamp,
        items: impl Iterator<Item = RecordRef<'a>> + Clone,
        changed: &mut Vec<PersonId>,
    ) {
        // Slots first, in a tight loop (see `Register::upsert_unordered`).
        let slots: Vec<Slot> = items
            .clone()
            .map(|it| self.intern_person(it.person_id))
            .collect();
        // A batch's records share their site: most find it here.
        let mut last_site: Option<(&str, u32)> = None;
        for (it, slot) in items.zip(slots) {
            let t = self.tubes.intern(it.tube_id);
            if self.tubes.has(t, slot) {
                continue;
            }
            let site = match last_site {
                Some((s, ix)) if s == it.site => ix,
                _ => {
                    let ix = self.tubes.intern_site(it.site);
                    last_site = Some((it.site, ix));
                    ix
                }
            };
            let member = Member::new(slot, it.collected_at);
            let collected = member.collected;
            self.tubes.set_site_once(t, site);
            self.tubes.push(t, member);
            let result = self.tubes.result(t);
            let pooled_now = self.tubes.members_len(t) == 2;
            self.records += 1;
            self.last_sample.raise(slot as usize, collected);
            self.mark_sample_everywhere(slot, member.collected_ms(), arrived_at);
            if let Some(res) = result {
                self.apply_result_to(t, member, res);
                if res == TestResult::Positive && pooled_now {
                    // A single positive just became a pooled positive.
                    let first = self
                        .tubes
                        .members(t)
                        .next()
                        .expect("a pooled tube has members")
                        .slot;
                    if let Some(hits) = self.positives.get_mut(&first) {
                        hits.iter_mut()
                            .filter(|h| h.tube == t)
                            .for_each(|h| h.pooled = true);
                    }
                    changed.push(self.register.person_id(first));
                }
            }
            changed.push(it.person_id);
        }
    }

    fn apply_results(&mut self, items: &[ResultItem], changed: &mut Vec<PersonId>) {
        for it in items {
            let t = self.tubes.intern(it.tube_id.as_str());
            self.tubes.touch(t, secs::of(it.reported_at));
            if self.tubes.result(t).is_some() {
                continue;
            }
            self.tubes.set_result(t, it.result);
            let members: Vec<Member> = self.tubes.members(t).collect();
            for m in members {
                self.apply_result_to(t, m, it.result);
                changed.push(self.register.person_id(m.slot));
            }
        }
    }

    fn apply_result_to(&mut self, tube: u32, m: Member, result: TestResult) {
        match result {
            TestResult::Negative => {
                self.last_negative.raise(m.slot as usize, m.collected);
                for r in &mut self.rounds {
                    r.mark_negative(m.slot, m.collected_ms());
                }
            }
            TestResult::Positive => {
                let pooled = self.tubes.members_len(tube) > 1;
                self.positives.entry(m.slot).or_default().push(PositiveHit {
                    tube,
                    pooled,
                    collected: m.collected,
                    cleared: false,
                });
            }
        }
    }

    fn create_round(&mut self, spec: &RoundSpec) {
        let mut round = Round::new(spec, &self.register);
        // Records already held may fall in the window (a round created late).
        // Their arrival times are not kept; for a round created after its
        // deadline, count them as arrived by the deadline, so that the
        // scheduler's close dated there does not take every one of them for
        // late (only those that arrived between the deadline and the creation
        // are misjudged, as on time).
        let arrived = spec.created_at.min(spec.deadline);
        for (m, result) in self.tubes.all_members() {
            round.mark_sample(m.slot, m.collected_ms(), arrived);
            if result == Some(TestResult::Negative) {
                round.mark_negative(m.slot, m.collected_ms());
            }
        }
        self.rounds.push(round);
    }

    fn close_round(&mut self, id: u32, at: Timestamp) -> (u64, Vec<PersonId>) {
        let Some(ix) = id.checked_sub(1).map(|i| i as usize) else {
            return (0, Vec::new());
        };
        if ix >= self.rounds.len() || self.rounds[ix].closed_at.is_some() {
            return (0, Vec::new());
        }
        if at < self.rounds[ix].deadline {
            // Closing early moves the deadline: samples after it become make-ups.
            let round = &mut self.rounds[ix];
            round.deadline = at;
            round.reset_samples();
            for (m, result) in self.tubes.all_members() {
                round.mark_sample(m.slot, m.collected_ms(), at);
                if result == Some(TestResult::Negative) {
                    round.mark_negative(m.slot, m.collected_ms());
                }
            }
        }
        let exempt = self.exempt_bits(&self.rounds[ix]);
        let frozen = self
            .pool
            .install(|| rounds::scope_bits(&self.rounds[ix], &self.register));
        // Under `red_after_consecutive_misses` a close also shifts "the last N
        // closed rounds" of everyone it covers, so people flagged in other
        // rounds may stop being red although this close does not flag them.
        let streaks = if self
            .policy
            .red_after_consecutive_misses
            .is_some_and(|n| n > 0)
        {
            self.flagged_elsewhere(&frozen)
        } else {
            Bitset::default()
        };
        let round = &mut self.rounds[ix];
        round.freeze(frozen, at);
        let missed_then = round.settle_after(at, &exempt);
        let (missing, flagged) = round.flag_sets(&exempt, self.policy.restore_on);
        let missing = missing + missed_then;
        round.flipped = missing;
        // Each person once, in slot order: `apply` need not sort them.
        let words = flagged.words().len().max(streaks.words().len());
        let either = (0..words).map(|i| flagged.word(i) | streaks.word(i));
        let changed: Vec<PersonId> = Bitset::from_words(either.collect())
            .iter_ones()
            .map(|s| self.register.person_id(s))
            .collect();
        self.take_final_counts(ix);
        let deadline = self.rounds[ix].deadline;
        let pos = self
            .closed_order
            .partition_point(|&o| (self.rounds[(o - 1) as usize].deadline, o) < (deadline, id));
        self.closed_order.insert(pos, id);
        (missing, changed)
    }

    /// Those of `people` still flagged in some closed round: word by word
    /// over each closed round's flagged set, so a close stays a few bitset
    /// passes per closed round even at city scale.
    fn flagged_elsewhere(&self, people: &Bitset) -> Bitset {
        let mut any = vec![0u64; people.words().len()];
        for &o in &self.closed_order {
            let r = &self.rounds[(o - 1) as usize];
            let (_, flagged) = r.flag_sets(&self.exempt_bits(r), self.policy.restore_on);
            for (i, w) in any.iter_mut().enumerate() {
                *w |= flagged.word(i) & people.word(i);
            }
        }
        Bitset::from_words(any)
    }

    /// Slots exempt from a round: an exemption covers it when
    /// `from <= deadline <= until`.
    fn exempt_bits(&self, round: &Round) -> Bitset {
        let mut b = Bitset::default();
        for e in self.exemptions.values() {
            if e.from <= round.deadline && round.deadline <= e.until {
                b.set(e.slot);
            }
        }
        b
    }

    fn is_exempt(&self, round: &Round, slot: Slot) -> bool {
        self.exemptions_of.get(&slot).is_some_and(|ids| {
            ids.iter().any(|id| {
                let e = &self.exemptions[id];
                e.from <= round.deadline && round.deadline <= e.until
            })
        })
    }

    /// A person's state in a round (precedence: sampled, made up, exempt, missing).
    pub fn state_in(&self, round: &Round, slot: Slot) -> RoundState {
        round.state_of(slot, || self.is_exempt(round, slot))
    }

    /// Whether a closed round still flags this person (`missed_round`).
    fn still_flagged(&self, round: &Round, slot: Slot) -> bool {
        if round.closed_at.is_none() || !round.frozen_has(slot) {
            return false;
        }
        match self.state_in(round, slot) {
            RoundState::Missing => true,
            RoundState::MadeUp => {
                self.policy.restore_on == RestoreOn::NegativeResult
                    && !round.made_up_negative(slot)
                    && !self.is_exempt(round, slot)
            }
            _ => false,
        }
    }

    // ----------------------------------------------------------- retention

    /// Advances retention's clock to `at` (the latest event time) and, each
    /// time it enters a new hour, drops what the window no longer needs, as
    /// of that whole hour. Driven by the events alone, so a replay (from the
    /// start or from a snapshot) holds exactly what the live engine held.
    fn tick(&mut self, at: Timestamp) {
        let at = at.as_millis();
        if at <= self.clock {
            return;
        }
        self.clock = at;
        if at >= self.next_prune {
            let hour = at.div_euclid(PRUNE_EVERY_MS) * PRUNE_EVERY_MS;
            self.prune(hour);
            self.next_prune = hour + PRUNE_EVERY_MS;
        }
    }

    /// Retention at `now` (ms): tubes whose every sample and report is older
    /// than the acceptance window leave memory (a record for them would be
    /// `invalid_time`; the tube ID, should it come again, is a new tube), and
    /// rounds closed `retention_days` ago are archived.
    fn prune(&mut self, now: i64) {
        let cutoff = secs::of(Timestamp::from_millis(now - ACCEPT_WINDOW_MS));
        let (remap, dropped) = self.tubes.prune(cutoff);
        if dropped > 0 || remap.contains(&NONE) {
            self.records -= dropped;
            for hits in self.positives.values_mut() {
                for h in hits {
                    h.tube = remap.get(h.tube as usize).copied().unwrap_or(NONE);
                }
            }
        }
        let keep = i64::from(self.policy.retention_days) * DAY_MS;
        for r in &mut self.rounds {
            if r.closed_at.is_some_and(|c| c.as_millis() + keep <= now) && !r.archived {
                r.archive();
            }
        }
    }

    /// Whether a round is `archived` at `now` (Retention).
    pub fn is_archived(&self, round: &Round, now: Timestamp) -> bool {
        round.archived
            || round.closed_at.is_some_and(|c| {
                c.as_millis() + i64::from(self.policy.retention_days) * DAY_MS <= now.as_millis()
            })
    }

    /// The contract's `state` of a round at `now`.
    pub fn round_state(&self, round: &Round, now: Timestamp) -> &'static str {
        if self.is_archived(round, now) {
            "archived"
        } else if round.is_closed() {
            "closed"
        } else {
            "open"
        }
    }

    // ------------------------------------------------------------ statuses

    /// The status a gate sees for `id` at `now`.
    pub fn status(&self, id: PersonId, now: Timestamp) -> Status {
        self.status_in(self.register.slot(id), now)
    }

    /// The status of whoever has `slot` (`None`: not heard of).
    fn status_in(&self, slot: Option<Slot>, now: Timestamp) -> Status {
        match slot {
            Some(slot) => self.status_of(slot, now),
            None => {
                let stale = self.policy.max_sample_age_hours.is_some();
                let reasons = if stale {
                    vec![Reason {
                        code: ReasonCode::NoRecentSample,
                        round_id: None,
                    }]
                } else {
                    Vec::new()
                };
                Status::from_reasons(reasons, None, None, None)
            }
        }
    }

    fn status_of(&self, slot: Slot, now: Timestamp) -> Status {
        let mut reasons = Vec::new();
        let mut flagged_in_order = Vec::new();
        for &id in &self.closed_order {
            let r = &self.rounds[(id - 1) as usize];
            if !r.frozen_has(slot) {
                continue;
            }
            let f = self.still_flagged(r, slot);
            flagged_in_order.push(f);
            if f {
                reasons.push(Reason {
                    code: ReasonCode::MissedRound,
                    round_id: Some(id.to_string()),
                });
            }
        }
        if let Some(n) = self.policy.red_after_consecutive_misses {
            let n = n as usize;
            if n > 0
                && flagged_in_order.len() >= n
                && flagged_in_order[flagged_in_order.len() - n..]
                    .iter()
                    .all(|&f| f)
            {
                reasons.push(Reason {
                    code: ReasonCode::RepeatedMisses,
                    round_id: None,
                });
            }
        }
        let last_neg = self.last_negative.try_get(slot as usize).unwrap_or(0);
        if let Some(hits) = self.positives.get(&slot) {
            for h in hits {
                let pooled = h.pooled;
                if !pooled && !h.cleared {
                    reasons.push(Reason {
                        code: ReasonCode::Positive,
                        round_id: None,
                    });
                } else if pooled && last_neg <= h.collected {
                    reasons.push(Reason {
                        code: ReasonCode::PoolPositive,
                        round_id: None,
                    });
                }
            }
        }
        let last = self.last_sample.try_get(slot as usize).unwrap_or(0);
        let mut valid_until = None;
        if let Some(h) = self.policy.max_sample_age_hours {
            let age = i64::from(h) * 3_600_000;
            let nrs = |t: i64| -> bool {
                let stale = last == 0 || t - secs::millis(last) > age;
                stale && !self.exempt_at(slot, t)
            };
            let cur = nrs(now.as_millis());
            if cur {
                reasons.push(Reason {
                    code: ReasonCode::NoRecentSample,
                    round_id: None,
                });
            }
            let mut cands: Vec<i64> = Vec::new();
            if last != 0 {
                cands.push(secs::millis(last) + age);
            }
            if let Some(ids) = self.exemptions_of.get(&slot) {
                for id in ids {
                    let e = &self.exemptions[id];
                    cands.push(e.from.as_millis());
                    cands.push(e.until.as_millis());
                }
            }
            // A candidate at `now` counts: at the last instant of an answer
            // it still changes a millisecond later.
            cands.retain(|&c| c >= now.as_millis());
            cands.sort_unstable();
            valid_until = cands
                .into_iter()
                .find(|&c| nrs(c) != cur || nrs(c + 1) != cur)
                .map(Timestamp::from_millis);
        }
        Status::from_reasons(
            reasons,
            valid_until,
            secs::to_ts(last),
            secs::to_ts(last_neg),
        )
    }

    fn exempt_at(&self, slot: Slot, t: i64) -> bool {
        self.exemptions_of.get(&slot).is_some_and(|ids| {
            ids.iter().any(|id| {
                let e = &self.exemptions[id];
                e.from.as_millis() <= t && t <= e.until.as_millis()
            })
        })
    }

    /// Statuses of many people at once (the cache's write-through).
    pub fn statuses(&self, people: &[PersonId], now: Timestamp) -> Vec<Status> {
        use rayon::prelude::*;
        // The ID index is looked up for a whole run of people first, in a
        // loop of nothing else, so the processor overlaps those cache
        // misses rather than taking them one status at a time.
        let run = |people: &[PersonId]| -> Vec<Status> {
            let slots = self.register.slots_of(people);
            slots.into_iter().map(|s| self.status_in(s, now)).collect()
        };
        if people.len() < 16_384 {
            return run(people);
        }
        self.pool
            .install(|| people.par_chunks(1024).flat_map_iter(run).collect())
    }

    /// Everyone the engine has a slot for (a full cache rewrite).
    pub fn everyone(&self) -> Vec<PersonId> {
        (0..self.register.slots() as u32)
            .map(|s| self.register.person_id(s))
            .collect()
    }

    /// The resident view: registered residents only.
    pub fn resident_view(&self, id: PersonId) -> Option<ResidentView> {
        let slot = self.register.slot(id)?;
        let row = self.register.row_of(slot)?;
        let r = self.register.resident(row);
        if !r.active {
            return None;
        }
        let flagged_rounds = self
            .rounds
            .iter()
            .filter(|round| self.still_flagged(round, slot))
            .map(|round| round.id.to_string())
            .collect();
        Some(ResidentView {
            person_id: id,
            name: r.name.to_owned(),
            phone: r.phone.to_owned(),
            area: r.area.to_string(),
            household: r.household.to_owned(),
            last_sample_at: secs::to_ts(self.last_sample.get(slot as usize)),
            flagged_rounds,
        })
    }

    /// The registered area of a person (active or moved out), for scope checks.
    pub fn area_of(&self, id: PersonId) -> Option<&crate::domain::AreaPath> {
        let slot = self.register.slot(id)?;
        let row = self.register.row_of(slot)?;
        Some(self.register.resident(row).area)
    }

    /// A digest of everything observable: statuses of every slot, every
    /// round's counts and missing list, tube contents and pending results.
    /// Replay must reproduce it exactly.
    pub fn digest(&self, now: Timestamp) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.register.active_count().hash(&mut h);
        self.register.heads_count().hash(&mut h);
        for s in 0..self.register.slots() as u32 {
            let id = self.register.person_id(s);
            id.hash(&mut h);
            let st = self.status(id, now);
            format!("{st:?}").hash(&mut h);
            if let Some(row) = self.register.row_of(s) {
                let r = self.register.resident(row);
                (r.name, r.phone, r.area.as_str(), r.household, r.active).hash(&mut h);
            }
        }
        self.records.hash(&mut h);
        for r in &self.rounds {
            (r.id, &r.name, r.deadline, r.closed_at, r.flipped).hash(&mut h);
            let archived = self.is_archived(r, now);
            archived.hash(&mut h);
            if !archived {
                self.progress(r, None, now).hash(&mut h);
            }
            format!("{:?}", self.counts(r, None)).hash(&mut h);
            for row in self.missing(r, None) {
                self.register.resident(row).person_id.hash(&mut h);
            }
        }
        self.tubes.digest(&mut h);
        for e in self.exemptions.values() {
            e.hash(&mut h);
        }
        h.finish()
    }
}

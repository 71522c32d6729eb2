//! What happened: the events the store logs and the engine is derived from,
//! and the commands that become them. Replaying the same events in the same
//! order rebuilds the same engine.

use std::sync::Arc;

use crate::domain::register::{HeadRow, RegisterRow};
use crate::domain::{AreaPath, ExemptionReason, PersonId, TestResult, Timestamp, TubeId};

/// One sample-collection record, already parsed. `site` is the scanner
/// token's site (or, for an admin, the record's own `site` field).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordItem {
    pub person_id: PersonId,
    pub tube_id: TubeId,
    pub collected_at: Timestamp,
    pub site: Arc<str>,
}

/// A record as the engine applies it: borrowed from a [`RecordItem`] or
/// from [`PackedRecords`].
#[derive(Clone, Copy, Debug)]
pub struct RecordRef<'a> {
    pub person_id: PersonId,
    /// A valid tube ID.
    pub tube_id: &'a str,
    pub collected_at: Timestamp,
    pub site: &'a str,
}

impl<'a> From<&'a RecordItem> for RecordRef<'a> {
    fn from(it: &'a RecordItem) -> Self {
        RecordRef {
            person_id: it.person_id,
            tube_id: it.tube_id.as_str(),
            collected_at: it.collected_at,
            site: &it.site,
        }
    }
}

/// Records in a few flat buffers instead of two strings each: how a replay
/// carries millions of them from the decoder to the engine without an
/// allocation (and a free on another thread) per record. Reused with
/// [`PackedRecords::clear`].
#[derive(Debug, Default)]
pub struct PackedRecords {
    people: Vec<PersonId>,
    collected: Vec<Timestamp>,
    /// Where each record's tube ID ends in `tubes`.
    tube_ends: Vec<u32>,
    tubes: String,
    /// Each record's site, as an index into `sites` (a batch has one or a
    /// few, one after another).
    site_of: Vec<u32>,
    sites: Vec<Box<str>>,
}

impl PackedRecords {
    /// Appends a record; fails (appending nothing) on an invalid tube ID.
    pub fn push(
        &mut self,
        person_id: PersonId,
        tube_id: &str,
        site: &str,
        collected_at: Timestamp,
    ) -> Result<(), crate::domain::TubeIdError> {
        TubeId::validate(tube_id)?;
        if self.sites.last().is_none_or(|s| **s != *site) {
            self.sites.push(site.into());
        }
        self.site_of.push(self.sites.len() as u32 - 1);
        self.people.push(person_id);
        self.collected.push(collected_at);
        self.tubes.push_str(tube_id);
        self.tube_ends.push(self.tubes.len() as u32);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.people.len()
    }

    pub fn is_empty(&self) -> bool {
        self.people.is_empty()
    }

    /// Empties the buffers but keeps their memory.
    pub fn clear(&mut self) {
        self.people.clear();
        self.collected.clear();
        self.tube_ends.clear();
        self.tubes.clear();
        self.site_of.clear();
        self.sites.clear();
    }

    pub fn iter(&self) -> impl Iterator<Item = RecordRef<'_>> + Clone {
        (0..self.people.len()).map(|i| {
            let start = if i == 0 { 0 } else { self.tube_ends[i - 1] } as usize;
            RecordRef {
                person_id: self.people[i],
                tube_id: &self.tubes[start..self.tube_ends[i] as usize],
                collected_at: self.collected[i],
                site: &self.sites[self.site_of[i] as usize],
            }
        })
    }
}

/// One lab result for a tube, already parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResultItem {
    pub tube_id: TubeId,
    pub result: TestResult,
    pub reported_at: Timestamp,
}

/// A mass-testing round as created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoundSpec {
    pub id: u32,
    pub name: String,
    pub scope: Vec<AreaPath>,
    pub opens_at: Timestamp,
    pub deadline: Timestamp,
    pub created_at: Timestamp,
}

/// An exemption as granted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExemptionSpec {
    pub id: u32,
    pub person_id: PersonId,
    pub reason: ExemptionReason,
    pub from: Timestamp,
    pub until: Timestamp,
    pub note: String,
    pub created_at: Timestamp,
}

/// An entry of the log. Only accepted data is logged: rejected records and
/// duplicates never become events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Upsert of register rows (one import).
    Register {
        rows: Vec<RegisterRow>,
        at: Timestamp,
    },
    /// Upsert of heads (one per area node).
    Heads {
        rows: Vec<HeadRow>,
        at: Timestamp,
    },
    /// A resident moved out.
    ResidentDelete {
        person_id: PersonId,
        at: Timestamp,
    },
    /// Accepted records of one batch, in batch order, with the batch's arrival time.
    Records {
        arrived_at: Timestamp,
        items: Vec<RecordItem>,
    },
    /// Accepted results of one batch, in batch order.
    Results {
        arrived_at: Timestamp,
        items: Vec<ResultItem>,
    },
    RoundCreate(RoundSpec),
    RoundClose {
        id: u32,
        at: Timestamp,
    },
    ExemptionCreate(ExemptionSpec),
    ExemptionDelete {
        id: u32,
        at: Timestamp,
    },
    /// An admin cleared a person's `positive`.
    Clear {
        person_id: PersonId,
        note: String,
        at: Timestamp,
    },
}

impl Event {
    /// When the event happened on the server's clock (a close dated at a
    /// deadline gives that deadline): what retention counts from.
    pub fn at(&self) -> Timestamp {
        match self {
            Event::Register { at, .. }
            | Event::Heads { at, .. }
            | Event::ResidentDelete { at, .. }
            | Event::RoundClose { at, .. }
            | Event::ExemptionDelete { at, .. }
            | Event::Clear { at, .. } => *at,
            Event::Records { arrived_at, .. } | Event::Results { arrived_at, .. } => *arrived_at,
            Event::RoundCreate(spec) => spec.created_at,
            Event::ExemptionCreate(spec) => spec.created_at,
        }
    }
}

/// A request to change state other than a record or result batch. The engine
/// checks it against the current state (`Engine::prepare`) and turns it into
/// an [`Event`]; the store logs that event and only then applies it.
#[derive(Clone, Debug)]
pub enum Command {
    Register(Vec<RegisterRow>),
    Heads(Vec<HeadRow>),
    ResidentDelete(PersonId),
    RoundCreate {
        name: String,
        scope: Vec<AreaPath>,
        opens_at: Timestamp,
        deadline: Timestamp,
    },
    /// Close a round now, or — for the scheduler closing a round at its
    /// deadline — at `at` (a moment not after now).
    RoundClose {
        id: u32,
        at: Option<Timestamp>,
    },
    ExemptionCreate {
        person_id: PersonId,
        reason: ExemptionReason,
        from: Timestamp,
        until: Timestamp,
        note: String,
    },
    ExemptionDelete {
        id: u32,
    },
    Clear {
        person_id: PersonId,
        note: String,
    },
    /// Many exemptions at once (`POST /v1/exemptions/import`), all or
    /// nothing: one event per exemption, logged in one transaction. Prepared
    /// by `Engine::prepare_all`.
    ExemptionImport(Vec<NewExemption>),
}

/// One exemption of an import, before it has an id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewExemption {
    pub person_id: PersonId,
    pub reason: ExemptionReason,
    pub from: Timestamp,
    pub until: Timestamp,
    pub note: String,
}

/// Why a command was refused (nothing was logged).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("area {0} is not in the register")]
    UnknownArea(String),
    #[error("the window ends before it starts")]
    InvalidWindow,
    #[error("a round needs at least one scope path")]
    EmptyScope,
    #[error("no such round")]
    UnknownRound,
    #[error("no such exemption")]
    UnknownExemption,
    #[error("no such resident")]
    UnknownResident,
    /// A command that logs several events, given to `Engine::prepare`
    /// (which makes one) instead of `Engine::prepare_all`.
    #[error("this command logs several events; prepare it with prepare_all")]
    ManyEvents,
}

/// What `Engine::prepare` tells the caller besides the event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prepared {
    /// Register or heads import: totals after it, and how the rows compare.
    Import {
        total: u64,
        inserted: u64,
        updated: u64,
        unchanged: u64,
    },
    RoundId(u32),
    ExemptionId(u32),
    /// An import's exemptions, in file order.
    ExemptionIds(Vec<u32>),
    Done,
}

/// The verdict on one record or result of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted. For records, `flag` = the person is not in the register
    /// (`unregistered`); for results, the tube has no records yet (`unmatched`).
    Accepted {
        flag: bool,
    },
    Duplicate,
    Rejected(RejectCode),
}

/// Per-item codes the engine decides (the HTTP layer decides the syntactic ones).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectCode {
    InvalidTime,
    TubeFull,
    TubeSiteConflict,
    ConflictingResult,
}

/// What applying an event changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// People whose status may have changed (for the cache write-through).
    pub changed: Vec<PersonId>,
    /// For a round close: how many people it flagged.
    pub flipped: u64,
}

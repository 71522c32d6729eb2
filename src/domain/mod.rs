//! Validated value types of the contract, and the register/heads/exemptions
//! parser (CSV and spreadsheets).
//! Parse, don't validate: a function holding one of these holds a valid one.
//! Depends on nothing else in the crate; no I/O.

pub mod area_path;
pub mod enums;
pub mod exemption_file;
pub mod person_id;
pub mod register;
pub mod sheet;
pub mod time;
pub mod tube_id;

pub use area_path::{AreaPath, AreaPathError};
pub use enums::UnknownVariant;
pub use enums::{AuditAction, Colour, ExemptionReason, ReasonCode, Role, TestResult};
pub use person_id::{PersonId, PersonIdError};
pub use register::{
    FileKind, HeadRow, LineCode, LineProblem, RegisterRow, parse_heads, parse_heads_as,
    parse_register, parse_register_as,
};
pub use time::{TimeError, Timestamp};
pub use tube_id::{TubeId, TubeIdError};

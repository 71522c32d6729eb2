//! The API's errors: one table maps every code to its HTTP status and its
//! literal wire string (snapshot-tested below, so renaming a code fails CI).
//! Handlers use `?`; `From` impls turn module errors into [`ApiError`].

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::domain::register::LineProblem;
use crate::engine::CommandError;
use crate::store::StoreError;

macro_rules! error_codes {
    ($($variant:ident => ($status:expr, $wire:literal),)*) => {
        /// Every error code of the contract.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Code { $($variant,)* }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The literal wire string; never changes once released.
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $wire,)* }
            }

            pub fn status(self) -> StatusCode {
                match self { $(Code::$variant => $status,)* }
            }
        }
    };
}

error_codes! {
    Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
    Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
    OutOfScope => (StatusCode::FORBIDDEN, "out_of_scope"),
    MalformedJson => (StatusCode::BAD_REQUEST, "malformed_json"),
    UnknownField => (StatusCode::BAD_REQUEST, "unknown_field"),
    InvalidField => (StatusCode::BAD_REQUEST, "invalid_field"),
    InvalidTime => (StatusCode::BAD_REQUEST, "invalid_time"),
    InvalidWindow => (StatusCode::BAD_REQUEST, "invalid_window"),
    UnknownArea => (StatusCode::BAD_REQUEST, "unknown_area"),
    InvalidPersonId => (StatusCode::BAD_REQUEST, "invalid_person_id"),
    InvalidQuery => (StatusCode::BAD_REQUEST, "invalid_query"),
    EmptyBatch => (StatusCode::BAD_REQUEST, "empty_batch"),
    InvalidRegister => (StatusCode::BAD_REQUEST, "invalid_register"),
    InvalidExemptions => (StatusCode::BAD_REQUEST, "invalid_exemptions"),
    BatchTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "batch_too_large"),
    PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
    UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
    UnknownToken => (StatusCode::NOT_FOUND, "unknown_token"),
    UnknownExemption => (StatusCode::NOT_FOUND, "unknown_exemption"),
    UnknownRound => (StatusCode::NOT_FOUND, "unknown_round"),
    UnknownResident => (StatusCode::NOT_FOUND, "unknown_resident"),
    RoundArchived => (StatusCode::GONE, "round_archived"),
    NotFound => (StatusCode::NOT_FOUND, "not_found"),
    MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
    StorageUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable"),
    Overloaded => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
    NotLeader => (StatusCode::SERVICE_UNAVAILABLE, "not_leader"),
    Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
}

macro_rules! item_codes {
    ($($variant:ident => $wire:literal,)*) => {
        /// Per-item codes inside a batch answer (`rejected[].code`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ItemCode { $($variant,)* }

        impl ItemCode {
            pub const ALL: &'static [ItemCode] = &[$(ItemCode::$variant,)*];

            /// The literal wire string; never changes once released.
            pub fn as_str(self) -> &'static str {
                match self { $(ItemCode::$variant => $wire,)* }
            }
        }
    };
}

item_codes! {
    InvalidField => "invalid_field",
    UnknownField => "unknown_field",
    InvalidPersonId => "invalid_person_id",
    InvalidTubeId => "invalid_tube_id",
    InvalidTime => "invalid_time",
    InvalidResult => "invalid_result",
    TubeFull => "tube_full",
    TubeSiteConflict => "tube_site_conflict",
    ConflictingResult => "conflicting_result",
}

impl Serialize for ItemCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// An error answer: `{"error":{"code","message"}}`, plus `lines` for a
/// rejected register or heads file, plus a request id on `500 internal`.
#[derive(Debug)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
    pub lines: Option<Vec<LineProblem>>,
    /// Set when the answer refuses an official something outside their
    /// area: the `denied` audit entry's fields (never sent to the client).
    /// Boxed: every `Result` in a handler carries this type.
    pub denied: Option<Box<Denial>>,
    /// The id a `500 internal` answer and its log line share, so a report
    /// from a user finds the cause (`None` on every other error).
    pub request_id: Option<String>,
    /// On `503 not_leader`: the leader's advertised URL, if known.
    pub leader: Option<String>,
}

/// What a `denied` audit entry records about a refusal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Denial {
    /// The area asked for, when the request named one.
    pub area: Option<String>,
    pub round_id: Option<String>,
    /// The resident's masked ID, when the refusal was about one.
    pub target: Option<String>,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            lines: None,
            denied: None,
            request_id: None,
            leader: None,
        }
    }

    /// Marks this answer as a refusal to be audited as `denied` (when the
    /// caller is an official).
    #[must_use]
    pub fn denied(mut self, d: Denial) -> ApiError {
        self.denied = Some(Box::new(d));
        self
    }

    /// A 500 whose cause goes to the log, never to the client.
    pub fn internal(cause: &dyn std::fmt::Display) -> ApiError {
        let id = request_id();
        tracing::error!(request_id = %id, "internal error: {cause}");
        let mut e = ApiError::new(Code::Internal, format!("internal error (request id {id})"));
        e.request_id = Some(id);
        e
    }
}

fn request_id() -> String {
    use rand::Rng;
    format!("{:016x}", rand::rng().random::<u64>())
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lines: Option<&'a [LineProblem]>,
    /// Only on `not_leader`, where it is `"URL"` or `null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    leader: Option<Leader<'a>>,
}

/// The leader's URL or `null` (present only on `not_leader`).
#[derive(Serialize)]
#[serde(transparent)]
struct Leader<'a>(Option<&'a str>);

#[derive(Serialize)]
struct Inner<'a> {
    code: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        // Only `internal` errors have one (the log holds the cause); other
        // 5xx bodies leave it out.
        let rid = self.request_id.as_deref();
        let mut b = HttpResponse::build(self.code.status());
        if matches!(self.code, Code::Overloaded | Code::NotLeader) {
            b.insert_header(("Retry-After", "1"));
        }
        b.json(Body {
            error: Inner {
                code: self.code.as_str(),
                message: &self.message,
                request_id: rid,
            },
            lines: self.lines.as_deref(),
            leader: (self.code == Code::NotLeader).then_some(Leader(self.leader.as_deref())),
        })
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Command(c) => c.into(),
            StoreError::Unavailable => {
                tracing::error!("storage unavailable: a write was not made durable");
                ApiError::new(
                    Code::StorageUnavailable,
                    "the write could not be made durable; nothing of it was kept, retry later",
                )
            }
            StoreError::NotLeader(leader) => {
                let mut e = ApiError::new(
                    Code::NotLeader,
                    "this server is a standby; send writes to the leader",
                );
                e.leader = leader;
                e
            }
            other => ApiError::internal(&other),
        }
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> ApiError {
        let code = match &e {
            CommandError::UnknownArea(_) => Code::UnknownArea,
            CommandError::InvalidWindow => Code::InvalidWindow,
            CommandError::EmptyScope => Code::InvalidField,
            CommandError::UnknownRound => Code::UnknownRound,
            CommandError::UnknownExemption => Code::UnknownExemption,
            CommandError::UnknownResident => Code::UnknownResident,
            // Only a programming error gives an import to `prepare`.
            CommandError::ManyEvents => return ApiError::internal(&e),
        };
        ApiError::new(code, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn error_table_is_exactly_the_released_one() {
        let table: Vec<String> = Code::ALL
            .iter()
            .map(|c| format!("{} {}", c.status().as_u16(), c.as_str()))
            .collect();
        let want = [
            "401 unauthorized",
            "403 forbidden",
            "403 out_of_scope",
            "400 malformed_json",
            "400 unknown_field",
            "400 invalid_field",
            "400 invalid_time",
            "400 invalid_window",
            "400 unknown_area",
            "400 invalid_person_id",
            "400 invalid_query",
            "400 empty_batch",
            "400 invalid_register",
            "400 invalid_exemptions",
            "413 batch_too_large",
            "413 payload_too_large",
            "415 unsupported_media_type",
            "404 unknown_token",
            "404 unknown_exemption",
            "404 unknown_round",
            "404 unknown_resident",
            "410 round_archived",
            "404 not_found",
            "405 method_not_allowed",
            "503 storage_unavailable",
            "503 overloaded",
            "503 not_leader",
            "500 internal",
        ];
        assert_eq!(table, want);
    }

    async fn body_of(e: &ApiError) -> Value {
        let res = e.error_response();
        let bytes = actix_web::body::to_bytes(res.into_body()).await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[actix_web::test]
    async fn only_internal_errors_carry_a_request_id() {
        let shed = body_of(&ApiError::new(Code::Overloaded, "busy")).await;
        assert_eq!(
            shed,
            serde_json::json!({"error": {"code": "overloaded", "message": "busy"}})
        );
        let disk = body_of(&ApiError::new(Code::StorageUnavailable, "disk")).await;
        assert!(disk["error"].get("request_id").is_none(), "{disk}");
        let e = ApiError::internal(&"boom");
        let body = body_of(&e).await;
        let rid = body["error"]["request_id"].as_str().unwrap();
        assert_eq!(rid.len(), 16, "{body}");
        assert!(e.message.contains(rid));
        assert!(
            !body.to_string().contains("boom"),
            "the cause stays in the log"
        );
    }

    #[test]
    fn item_codes_are_exactly_the_released_ones_and_serialise_to_them() {
        let wire: Vec<&str> = ItemCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            wire,
            [
                "invalid_field",
                "unknown_field",
                "invalid_person_id",
                "invalid_tube_id",
                "invalid_time",
                "invalid_result",
                "tube_full",
                "tube_site_conflict",
                "conflicting_result",
            ]
        );
        for c in ItemCode::ALL {
            assert_eq!(
                serde_json::to_string(c).unwrap(),
                format!("\"{}\"", c.as_str())
            );
        }
    }
}

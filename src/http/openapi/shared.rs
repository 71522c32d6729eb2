//! The schemas no one endpoint owns: the value types (`PersonId`,
//! `AreaPath`, …), the closed sets made from the domain enums' `ALL`, and the
//! error shapes every operation answers with.

use serde_json::{Value, json};

use super::build::{area_path_pattern, count, enum_of, object, r, string};
use crate::domain::LineCode;
use crate::domain::register::MAX_PROBLEMS;
use crate::domain::{Colour, ExemptionReason, ReasonCode, Role, TestResult, area_path, tube_id};
use crate::http::error::Code;

pub(crate) fn schemas() -> Vec<(&'static str, Value)> {
    vec![
        (
            "PersonId",
            json!({
                "type": "string",
                "minLength": 18,
                "maxLength": 18,
                "pattern": "^[0-9]{17}[0-9Xx]$",
                "description": "An 18-character resident ID number (GB 11643-1999): 6-digit region, 8-digit \
                                birth date, 3-digit sequence, ISO 7064 MOD 11-2 check character (`X` for 10; \
                                `x` is accepted and normalised). Bad length, characters or check character, \
                                or an impossible or future birth date: `invalid_person_id`.",
                "example": "61080219850312001X"
            }),
        ),
        (
            "MaskedPersonId",
            json!({
                "type": "string",
                "minLength": 18,
                "maxLength": 18,
                "pattern": "^[0-9]{6}([*]{8}|[0-9]{8})[0-9]{3}[0-9X]$",
                "description": "An ID number masked to its first 6 and last 4 characters, or whole when an \
                                admin asked `unmask=true`.",
                "example": "610802********001X"
            }),
        ),
        (
            "AreaPath",
            json!({
                "type": "string",
                "minLength": 1,
                "maxLength": area_path::MAX_BYTES,
                "pattern": area_path_pattern(),
                "description": format!(
                    "`/`-separated segments from the top of the hierarchy down; at most {} segments and \
                     {} bytes (UTF-8); no empty segment (leading, trailing or doubled `/`), no segment \
                     starting or ending with whitespace, no control characters. A scope is a prefix of \
                     whole segments.",
                    area_path::MAX_SEGMENTS,
                    area_path::MAX_BYTES
                ),
                "example": "崇文路街道/学院社区/第03网格/5号楼/3层"
            }),
        ),
        (
            "TubeId",
            json!({
                "type": "string",
                "minLength": 1,
                "maxLength": tube_id::MAX_LEN,
                "pattern": format!("^[A-Za-z0-9-]{{1,{}}}$", tube_id::MAX_LEN),
                "description": "Unique city-wide.",
                "example": "T2204190001"
            }),
        ),
        (
            "RoundId",
            json!({ "type": "string", "pattern": "^[1-9][0-9]*$", "description": "A round's id (assigned by the server).", "example": "3" }),
        ),
        ("Role", enum_of(Role::ALL.iter().map(|r| r.as_str()))),
        ("Colour", enum_of(Colour::ALL.iter().map(|c| c.as_str()))),
        (
            "ReasonCode",
            enum_of(ReasonCode::ALL.iter().map(|c| c.as_str())),
        ),
        (
            "TestResult",
            enum_of(TestResult::ALL.iter().map(|c| c.as_str())),
        ),
        (
            "ExemptionReason",
            enum_of(ExemptionReason::ALL.iter().map(|c| c.as_str())),
        ),
        ("ErrorCode", {
            let mut v = enum_of(Code::ALL.iter().map(|c| c.as_str()));
            v["description"] =
                json!("Every error code; see the table in the document's description.");
            v
        }),
        (
            "Error",
            object(
                "Every error: `{\"error\": {\"code\", \"message\"}}`. `code` never changes once released; \
                 `message` is for humans and may change.",
                &["error"],
                vec![(
                    "error",
                    object(
                        "",
                        &["code", "message"],
                        vec![
                            ("code", r("ErrorCode")),
                            ("message", string("For humans; may change.")),
                            (
                                "request_id",
                                json!({ "type": "string", "description": "On 5xx only: names the failure in the server's log." }),
                            ),
                        ],
                    ),
                )],
            ),
        ),
        (
            "LineProblem",
            object(
                "One problem of a rejected file (CSV or spreadsheet: register, heads, exemptions).",
                &["line", "code", "message"],
                vec![
                    (
                        "line",
                        count(
                            "The line (the header is 1), or a spreadsheet's row number; 0 when not tied to a line.",
                        ),
                    ),
                    (
                        "sheet",
                        string("A spreadsheet's sheet name; absent for CSV."),
                    ),
                    ("code", enum_of(LineCode::ALL.iter().map(|c| c.as_str()))),
                    ("message", string("For humans.")),
                ],
            ),
        ),
        (
            "RegisterError",
            json!({
                "description": "`400 invalid_register`: the error plus the file's problems.",
                "allOf": [
                    r("Error"),
                    object("", &["lines"], vec![(
                        "lines",
                        json!({ "type": "array", "maxItems": MAX_PROBLEMS, "items": r("LineProblem"), "description": "The first 100 problems." }),
                    )]),
                ]
            }),
        ),
    ]
}

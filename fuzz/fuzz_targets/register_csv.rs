//! Register files from any bytes: parsing never panics; a file is either
//! rows (one per distinct person) or at most 100 problems, never both or
//! neither (an empty file is a problem).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollcall::domain::register::{MAX_PROBLEMS, parse_register};

fuzz_target!(|data: &[u8]| {
    let today = chrono::NaiveDate::from_ymd_opt(2022, 4, 19).unwrap();
    match parse_register(data, today) {
        Ok(rows) => {
            let mut ids: Vec<_> = rows.iter().map(|r| r.person_id).collect();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), rows.len(), "a person twice");
        }
        Err(problems) => {
            assert!(!problems.is_empty());
            assert!(problems.len() <= MAX_PROBLEMS);
        }
    }
});

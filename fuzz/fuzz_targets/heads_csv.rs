//! Heads files from any bytes: parsing never panics; a file is either rows
//! (one per distinct area) or at most 100 problems.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollcall::domain::register::{MAX_PROBLEMS, parse_heads};

fuzz_target!(|data: &[u8]| match parse_heads(data) {
    Ok(rows) => {
        let mut areas: Vec<_> = rows.iter().map(|r| r.area.clone()).collect();
        areas.sort_unstable();
        areas.dedup();
        assert_eq!(areas.len(), rows.len(), "an area twice");
    }
    Err(problems) => {
        assert!(!problems.is_empty());
        assert!(problems.len() <= MAX_PROBLEMS);
    }
});

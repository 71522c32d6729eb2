//! Times (RFC 3339 with an offset) from any string: parsing never panics,
//! and a time that parses is answered (`to_rfc3339`) as a string that
//! parses back to the same instant.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollcall::domain::Timestamp;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(t) = Timestamp::parse(s) else {
        return;
    };
    let printed = t.to_rfc3339();
    let back = Timestamp::parse(&printed)
        .unwrap_or_else(|e| panic!("{s:?} is answered as {printed:?}, which does not parse: {e}"));
    assert_eq!(back, t, "{s:?} -> {printed:?}");
    let _ = t.hour_floor_shanghai();
    let _ = t.shanghai_date();
});

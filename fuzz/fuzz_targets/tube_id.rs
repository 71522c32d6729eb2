//! Tube IDs from any string: parsing never panics, and an ID that parses
//! prints as itself and is 1–32 characters of `[A-Za-z0-9-]`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollcall::domain::TubeId;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = TubeId::parse(s);
    assert_eq!(parsed.is_ok(), TubeId::validate(s).is_ok());
    if let Ok(t) = parsed {
        assert_eq!(t.as_str(), s);
        assert_eq!(t.to_string(), s);
        assert!((1..=32).contains(&s.len()));
        assert!(s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    }
});

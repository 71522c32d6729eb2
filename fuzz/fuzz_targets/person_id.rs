//! Person IDs (GB 11643-1999) from any bytes: parsing never panics, and an
//! ID that parses prints back as itself (upper-case `X`) and parses again
//! to the same ID, through its number form too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollcall::domain::PersonId;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let today = chrono::NaiveDate::from_ymd_opt(2022, 4, 19).unwrap();
    let _ = s.parse::<PersonId>();
    if let Ok(id) = PersonId::parse_on(s, today) {
        let printed = id.to_string();
        assert_eq!(printed, s.to_ascii_uppercase());
        assert_eq!(PersonId::parse_on(&printed, today).unwrap(), id);
        assert_eq!(PersonId::from_u64(id.as_u64()).unwrap(), id);
        assert!(id.birth_date() <= today);
        let masked = id.masked();
        assert!(
            !masked.contains(&printed[6..14]),
            "the mask hides the birth date"
        );
    }
});

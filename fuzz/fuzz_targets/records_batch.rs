//! `POST /v1/records` bodies from any bytes, through the handler's own
//! functions: the batch rules, then each item as an admin's (naming its
//! site) and as a scanner's. Never panics; every item is judged.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use rollcall::http::routes::records::{batch_items, parse_record};

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(items) = batch_items(v, "records") else {
        return;
    };
    assert!(!items.is_empty() && items.len() <= 10_000);
    let site: Arc<str> = Arc::from("S01");
    for item in &items {
        if let Ok(r) = parse_record(item, None) {
            assert!(!r.site.is_empty() && r.site.chars().count() <= 64);
        }
        if let Ok(r) = parse_record(item, Some(&site)) {
            assert_eq!(r.site, site);
        }
    }
});

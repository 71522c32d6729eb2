//! `POST /v1/results` bodies from any bytes, through the handler's own
//! functions: the batch rules, then each item. Never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollcall::http::routes::records::batch_items;
use rollcall::http::routes::results::parse_result;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(items) = batch_items(v, "results") else {
        return;
    };
    assert!(!items.is_empty() && items.len() <= 10_000);
    for item in &items {
        let _ = parse_result(item);
    }
});

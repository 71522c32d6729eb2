//! The officials' dashboard, served from the binary at `/`.

pub const INDEX_HTML: &str = "<!doctype html><title>rollcall</title>";

//! Area paths from any string: parsing never panics, and a path that parses
//! prints as itself, is a prefix of itself, and is its parent's child.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollcall::domain::AreaPath;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(p) = AreaPath::parse(s) else {
        return;
    };
    assert_eq!(p.to_string(), s);
    assert_eq!(p.as_str(), s);
    assert!(p.is_prefix_of(&p));
    assert_eq!(p.depth(), p.segments().count());
    assert_eq!(p.leaf(), p.segments().last().unwrap());
    if let Some(parent) = p.parent() {
        assert!(parent.is_prefix_of(&p));
        assert!(!p.is_prefix_of(&parent));
        assert_eq!(parent.child(p.leaf()).unwrap(), p);
    } else {
        assert_eq!(p.depth(), 1);
    }
});

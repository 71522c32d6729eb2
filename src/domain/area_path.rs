//! `AreaPath`: a place in the register's hierarchy, as `/`-separated segments
//! from the top down (`崇文路街道/学院社区/第03网格/05号楼/03层`).
//!
//! Ordering is plain string order (Unicode code points), the order the
//! contract sorts by. A scope is a prefix of whole segments
//! ([`AreaPath::is_prefix_of`]). No I/O.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Most segments a path may have.
pub const MAX_SEGMENTS: usize = 16;
/// Most bytes (UTF-8) a whole path may have.
pub const MAX_BYTES: usize = 512;

/// A valid area path. Built only through [`AreaPath::parse`] (or `FromStr`,
/// serde), so every value obeys the rules listed on [`AreaPathError`].
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AreaPath(Box<str>);

/// Why a string is not a valid area path. `segment` numbers count from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AreaPathError {
    /// The empty string.
    #[error("an area path must not be empty")]
    Empty,
    /// Longer than [`MAX_BYTES`] bytes.
    #[error("an area path has at most {MAX_BYTES} bytes, found {found}")]
    TooLong { found: usize },
    /// More than [`MAX_SEGMENTS`] segments.
    #[error("an area path has at most {MAX_SEGMENTS} segments, found {found}")]
    TooDeep { found: usize },
    /// An empty segment: a leading, trailing or doubled `/`.
    #[error("segment {segment} of the area path is empty (leading, trailing or doubled '/')")]
    EmptySegment { segment: usize },
    /// A segment starting or ending with whitespace.
    #[error("segment {segment} of the area path starts or ends with whitespace")]
    Whitespace { segment: usize },
    /// A control character inside a segment.
    #[error("segment {segment} of the area path contains a control character")]
    ControlCharacter { segment: usize },
}

impl AreaPath {
    /// Parses a path. Fails when it is empty, over [`MAX_BYTES`] bytes or
    /// [`MAX_SEGMENTS`] segments, has an empty segment (leading, trailing or
    /// doubled `/`), a segment with leading or trailing whitespace, or a
    /// control character.
    pub fn parse(s: &str) -> Result<AreaPath, AreaPathError> {
        if s.is_empty() {
            return Err(AreaPathError::Empty);
        }
        if s.len() > MAX_BYTES {
            return Err(AreaPathError::TooLong { found: s.len() });
        }
        let mut count = 0;
        for (i, segment) in s.split('/').enumerate() {
            let n = i + 1;
            count = n;
            if segment.is_empty() {
                return Err(AreaPathError::EmptySegment { segment: n });
            }
            if segment.chars().any(char::is_control) {
                return Err(AreaPathError::ControlCharacter { segment: n });
            }
            if segment.starts_with(char::is_whitespace) || segment.ends_with(char::is_whitespace) {
                return Err(AreaPathError::Whitespace { segment: n });
            }
        }
        if count > MAX_SEGMENTS {
            return Err(AreaPathError::TooDeep { found: count });
        }
        Ok(AreaPath(s.into()))
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The segments from the top down.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// Number of segments (1 for a top-level area).
    pub fn depth(&self) -> usize {
        self.0.bytes().filter(|&b| b == b'/').count() + 1
    }

    /// The path one level up, or `None` at the top.
    pub fn parent(&self) -> Option<AreaPath> {
        self.0
            .rsplit_once('/')
            .map(|(parent, _)| AreaPath(parent.into()))
    }

    /// The last segment.
    pub fn leaf(&self) -> &str {
        self.0.rsplit_once('/').map_or(&self.0, |(_, leaf)| leaf)
    }

    /// Whether `self` is `other` or an ancestor of it, by whole segments:
    /// `a/b` is a prefix of `a/b` and `a/b/c`, not of `a/bc`.
    pub fn is_prefix_of(&self, other: &AreaPath) -> bool {
        match other.0.strip_prefix(&*self.0) {
            Some(rest) => rest.is_empty() || rest.starts_with('/'),
            None => false,
        }
    }

    /// The path with `segment` appended below it. Fails when the result
    /// breaks a rule of [`AreaPath::parse`].
    pub fn child(&self, segment: &str) -> Result<AreaPath, AreaPathError> {
        AreaPath::parse(&format!("{}/{segment}", self.0))
    }
}

impl FromStr for AreaPath {
    type Err = AreaPathError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AreaPath::parse(s)
    }
}

impl TryFrom<String> for AreaPath {
    type Error = AreaPathError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        AreaPath::parse(&s)?;
        Ok(AreaPath(s.into_boxed_str()))
    }
}

impl From<AreaPath> for String {
    fn from(path: AreaPath) -> String {
        path.0.into_string()
    }
}

impl AsRef<str> for AreaPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AreaPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for AreaPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AreaPath({:?})", &*self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> AreaPath {
        AreaPath::parse(s).unwrap()
    }

    #[test]
    fn rejected_inputs_give_the_matching_error() {
        let deep = vec!["a"; MAX_SEGMENTS + 1].join("/");
        let long = "区".repeat(MAX_BYTES / 3 + 1);
        let cases: Vec<(&str, AreaPathError)> = vec![
            ("", AreaPathError::Empty),
            ("/", AreaPathError::EmptySegment { segment: 1 }),
            ("/a", AreaPathError::EmptySegment { segment: 1 }),
            ("a/", AreaPathError::EmptySegment { segment: 2 }),
            ("a//b", AreaPathError::EmptySegment { segment: 2 }),
            (" a", AreaPathError::Whitespace { segment: 1 }),
            ("a/b ", AreaPathError::Whitespace { segment: 2 }),
            ("a/\u{3000}b", AreaPathError::Whitespace { segment: 2 }),
            ("a/ /b", AreaPathError::Whitespace { segment: 2 }),
            ("a\tb", AreaPathError::ControlCharacter { segment: 1 }),
            ("a/b\nc", AreaPathError::ControlCharacter { segment: 2 }),
            ("a/\u{7f}", AreaPathError::ControlCharacter { segment: 2 }),
            (
                &deep,
                AreaPathError::TooDeep {
                    found: MAX_SEGMENTS + 1,
                },
            ),
            (&long, AreaPathError::TooLong { found: long.len() }),
        ];
        for (input, expected) in cases {
            assert_eq!(AreaPath::parse(input), Err(expected), "input {input:?}");
        }
    }

    #[test]
    fn accepted_edge_cases_parse() {
        let deepest = vec!["a"; MAX_SEGMENTS].join("/");
        assert_eq!(p(&deepest).depth(), MAX_SEGMENTS);
        let longest = "a".repeat(MAX_BYTES);
        assert_eq!(p(&longest).as_str().len(), MAX_BYTES);
        assert_eq!(p("崇文路街道 东区/学院社区").depth(), 2);
        assert_eq!(p("a").parent(), None);
    }

    #[test]
    fn segments_depth_parent_and_leaf_follow_the_path() {
        let path = p("崇文路街道/学院社区/第03网格/05号楼/03层");
        assert_eq!(
            path.segments().collect::<Vec<_>>(),
            ["崇文路街道", "学院社区", "第03网格", "05号楼", "03层"]
        );
        assert_eq!(path.depth(), 5);
        assert_eq!(path.leaf(), "03层");
        assert_eq!(
            path.parent(),
            Some(p("崇文路街道/学院社区/第03网格/05号楼"))
        );
        assert_eq!(
            p("崇文路街道").child("学院社区"),
            Ok(p("崇文路街道/学院社区"))
        );
        assert!(p("a").child("").is_err());
    }

    #[test]
    fn a_prefix_is_made_of_whole_segments() {
        assert!(p("a/b").is_prefix_of(&p("a/b")));
        assert!(p("a/b").is_prefix_of(&p("a/b/c")));
        assert!(p("a").is_prefix_of(&p("a/b/c")));
        assert!(!p("a/b").is_prefix_of(&p("a/bc")));
        assert!(!p("a/b/c").is_prefix_of(&p("a/b")));
        assert!(!p("b").is_prefix_of(&p("a/b")));
    }

    #[test]
    fn ordering_is_code_point_order_of_the_whole_path() {
        let mut paths = [
            p("a/b"),
            p("a"),
            p("a/B"),
            p("学院社区"),
            p("a/b/c"),
            p("10号楼"),
            p("9号楼"),
        ];
        paths.sort();
        let sorted: Vec<&str> = paths.iter().map(AreaPath::as_str).collect();
        assert_eq!(
            sorted,
            ["10号楼", "9号楼", "a", "a/B", "a/b", "a/b/c", "学院社区"]
        );
    }

    #[test]
    fn serde_writes_the_string_and_reads_through_the_parser() {
        let path = p("崇文路街道/学院社区");
        assert_eq!(
            serde_json::to_string(&path).unwrap(),
            "\"崇文路街道/学院社区\""
        );
        assert_eq!(
            serde_json::from_str::<AreaPath>("\"崇文路街道/学院社区\"").unwrap(),
            path
        );
        assert!(serde_json::from_str::<AreaPath>("\"崇文路街道/\"").is_err());
        assert_eq!(format!("{path:?}"), "AreaPath(\"崇文路街道/学院社区\")");
    }

    fn segment() -> impl Strategy<Value = String> {
        "[a-z0-9号楼层网格社区-]{1,6}"
    }

    fn path() -> impl Strategy<Value = String> {
        prop::collection::vec(segment(), 1..=6).prop_map(|s| s.join("/"))
    }

    proptest! {
        #[test]
        fn a_valid_path_round_trips_through_display_and_serde(s in path()) {
            let path = p(&s);
            prop_assert_eq!(path.to_string(), s.clone());
            prop_assert_eq!(path.segments().count(), path.depth());
            let json = serde_json::to_string(&path).unwrap();
            prop_assert_eq!(serde_json::from_str::<AreaPath>(&json).unwrap(), path);
        }

        #[test]
        fn every_ancestor_is_a_prefix_and_a_sibling_is_not(s in path(), extra in segment()) {
            let path = p(&s);
            let mut ancestor = Some(path.clone());
            while let Some(a) = ancestor {
                prop_assert!(a.is_prefix_of(&path));
                ancestor = a.parent();
            }
            let child = path.child(&extra).unwrap();
            prop_assert!(path.is_prefix_of(&child));
            prop_assert!(!child.is_prefix_of(&path));
            // Same text extended inside the last segment: not a prefix.
            let longer = p(&format!("{s}{extra}"));
            prop_assert!(!path.is_prefix_of(&longer));
        }

        #[test]
        fn prefix_agrees_with_segment_lists(a in path(), b in path()) {
            let (pa, pb) = (p(&a), p(&b));
            let sa: Vec<&str> = pa.segments().collect();
            let sb: Vec<&str> = pb.segments().collect();
            prop_assert_eq!(pa.is_prefix_of(&pb), sb.starts_with(&sa));
        }
    }
}

//! What `POST /v1/records` and `POST /v1/results` share: the batch body's
//! rules (an object holding exactly the array, 1 to [`MAX_BATCH`] items),
//! read straight from the body's bytes into borrowed items (no JSON tree,
//! no string per field unless it held escapes), the field check of one item, the split of a batch into the items that
//! parse and those refused, and the tally of the engine's verdicts into the
//! answer's counts.

use std::borrow::Cow;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::engine::{RejectCode, Verdict};
use crate::http::error::{ApiError, Code, ItemCode};
use crate::http::openapi::build::{
    JSON_BODY_ERRORS, WRITE_ERRORS, count, enum_of, item_code_meaning, object, string,
};
use serde_json::{Value, json};

/// The most items one batch may hold.
pub const MAX_BATCH: usize = 10_000;

/// One refused item of a batch.
#[derive(Serialize, Debug)]
pub struct Rejected {
    pub index: usize,
    pub code: ItemCode,
    pub message: String,
}

impl Rejected {
    pub fn new(index: usize, code: ItemCode, message: impl Into<String>) -> Rejected {
        Rejected {
            index,
            code,
            message: message.into(),
        }
    }
}

/// A JSON string field as sent: borrowed from the body unless it held
/// escapes; anything else (a number, `null`, an array, …) is `Other`.
#[derive(Debug)]
pub enum Field<'a> {
    Str(Cow<'a, str>),
    Other,
}

impl<'de> Deserialize<'de> for Field<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(FieldVisitor)
    }
}

struct FieldVisitor;

impl<'de> Visitor<'de> for FieldVisitor {
    type Value = Field<'de>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Field<'de>, E> {
        Ok(Field::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Field<'de>, E> {
        Ok(Field::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Field<'de>, E> {
        Ok(Field::Str(Cow::Owned(v)))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Field<'de>, E> {
        Ok(Field::Other)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Field<'de>, E> {
        Ok(Field::Other)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Field<'de>, E> {
        Ok(Field::Other)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Field<'de>, E> {
        Ok(Field::Other)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Field<'de>, E> {
        Ok(Field::Other)
    }
    fn visit_none<E: de::Error>(self) -> Result<Field<'de>, E> {
        Ok(Field::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Field<'de>, A::Error> {
        drain_seq(seq)?;
        Ok(Field::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Field<'de>, A::Error> {
        drain_map(map)?;
        Ok(Field::Other)
    }
}

/// An object key, borrowed from the body unless it held escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Keeps the first key in a JSON object's key order (what a sorted map of
/// the object would list first), so that the error names the same key
/// whatever the order it was sent in.
fn keep_least(least: &mut Option<String>, k: &str) {
    if least.as_deref().is_none_or(|l| k < l) {
        *least = Some(k.to_owned());
    }
}

/// One item of a batch as sent, its known fields picked out of the body
/// without building a tree: `fields[i]` is the value of `names[i]` (the
/// last one sent, as with any JSON object).
#[derive(Debug)]
pub struct Item<'a> {
    object: bool,
    fields: [Option<Field<'a>>; MAX_FIELDS],
    /// The first unknown key (in key order), if any.
    unknown: Option<String>,
}

/// The most named fields an item kind has.
const MAX_FIELDS: usize = 4;

impl Item<'_> {
    /// The field check of one item: an object whose keys are all in
    /// `names[..required]` and all of those strings. The names past
    /// `required` are picked out but unknown here (a scanner's record may
    /// not name its site). Unknown keys are reported first, then the first
    /// field in `names` order that is missing or not a string. Returns the
    /// fields' values in `names` order (`""` past `required`).
    pub fn check(
        &self,
        names: &[&str],
        required: usize,
    ) -> Result<[&str; MAX_FIELDS], (ItemCode, String)> {
        if !self.object {
            return Err((ItemCode::InvalidField, "the item must be an object".into()));
        }
        let mut unknown = self.unknown.as_deref();
        for (name, f) in names.iter().zip(&self.fields).skip(required) {
            if f.is_some() && unknown.is_none_or(|u| *name < u) {
                unknown = Some(name);
            }
        }
        if let Some(k) = unknown {
            return Err((ItemCode::UnknownField, format!("unknown field `{k}`")));
        }
        let mut out = [""; MAX_FIELDS];
        for (i, name) in names.iter().enumerate().take(required) {
            match &self.fields[i] {
                Some(Field::Str(s)) => out[i] = s,
                _ => return Err((ItemCode::InvalidField, format!("`{name}` must be a string"))),
            }
        }
        Ok(out)
    }
}

struct ItemSeed {
    names: &'static [&'static str],
}

impl<'de> DeserializeSeed<'de> for ItemSeed {
    type Value = Item<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Item<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ItemSeed {
    type Value = Item<'de>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a batch item")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Item<'de>, A::Error> {
        let mut item = Item {
            object: true,
            fields: [None, None, None, None],
            unknown: None,
        };
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            if let Some(i) = self.names.iter().position(|n| *n == k) {
                item.fields[i] = Some(map.next_value::<Field<'de>>()?);
            } else {
                keep_least(&mut item.unknown, &k);
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(item)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Item<'de>, A::Error> {
        drain_seq(seq)?;
        Ok(Item::not_object())
    }
    fn visit_borrowed_str<E: de::Error>(self, _: &'de str) -> Result<Item<'de>, E> {
        Ok(Item::not_object())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Item<'de>, E> {
        Ok(Item::not_object())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Item<'de>, E> {
        Ok(Item::not_object())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Item<'de>, E> {
        Ok(Item::not_object())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Item<'de>, E> {
        Ok(Item::not_object())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Item<'de>, E> {
        Ok(Item::not_object())
    }
    fn visit_unit<E: de::Error>(self) -> Result<Item<'de>, E> {
        Ok(Item::not_object())
    }
}

impl Item<'_> {
    fn not_object() -> Self {
        Item {
            object: false,
            fields: [None, None, None, None],
            unknown: None,
        }
    }
}

/// The array under the batch's key, item by item; `None` when the value
/// is not an array.
struct ItemsSeed {
    names: &'static [&'static str],
}

impl<'de> DeserializeSeed<'de> for ItemsSeed {
    type Value = Option<Vec<Item<'de>>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ItemsSeed {
    type Value = Option<Vec<Item<'de>>>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of items")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_BATCH));
        while let Some(it) = seq.next_element_seed(ItemSeed { names: self.names })? {
            items.push(it);
        }
        Ok(Some(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        drain_map(map)?;
        Ok(None)
    }
    fn visit_borrowed_str<E: de::Error>(self, _: &'de str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// The whole body as sent: whether it was an object, its first unknown
/// key, and the array its batch key held (`None`: absent or not an array,
/// which the contract answers alike).
struct Body<'a> {
    object: bool,
    unknown: Option<String>,
    items: Option<Vec<Item<'a>>>,
}

struct BodySeed {
    key: &'static str,
    names: &'static [&'static str],
}

impl BodySeed {
    fn not_object<'a>() -> Body<'a> {
        Body {
            object: false,
            unknown: None,
            items: None,
        }
    }
}

impl<'de> Visitor<'de> for BodySeed {
    type Value = Body<'de>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a batch body")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Body<'de>, A::Error> {
        let mut body = Body {
            object: true,
            unknown: None,
            items: None,
        };
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            if k == self.key {
                body.items = map.next_value_seed(ItemsSeed { names: self.names })?;
            } else {
                keep_least(&mut body.unknown, &k);
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(body)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Body<'de>, A::Error> {
        drain_seq(seq)?;
        Ok(Self::not_object())
    }
    fn visit_borrowed_str<E: de::Error>(self, _: &'de str) -> Result<Body<'de>, E> {
        Ok(Self::not_object())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Body<'de>, E> {
        Ok(Self::not_object())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Body<'de>, E> {
        Ok(Self::not_object())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Body<'de>, E> {
        Ok(Self::not_object())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Body<'de>, E> {
        Ok(Self::not_object())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Body<'de>, E> {
        Ok(Self::not_object())
    }
    fn visit_unit<E: de::Error>(self) -> Result<Body<'de>, E> {
        Ok(Self::not_object())
    }
}

/// The items of a batch body `{"<key>": [...]}` under the contract's rules,
/// parsed straight from the body's bytes (well-formed JSON first: any
/// syntax error is `malformed_json`, whatever else is wrong). `names` are
/// the fields an item may hold, at most four.
pub fn batch_items<'a>(
    body: &'a [u8],
    key: &'static str,
    names: &'static [&'static str],
) -> Result<Vec<Item<'a>>, ApiError> {
    debug_assert!(names.len() <= MAX_FIELDS);
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = Deserializer::deserialize_any(&mut de, BodySeed { key, names })
        .and_then(|b| de.end().map(|()| b))
        .map_err(|e| {
            ApiError::new(
                Code::MalformedJson,
                format!("the body is not valid JSON: {e}"),
            )
        })?;
    if !parsed.object {
        return Err(ApiError::new(
            Code::InvalidField,
            format!("the body must be an object holding `{key}`"),
        ));
    }
    if let Some(k) = parsed.unknown {
        return Err(ApiError::new(
            Code::UnknownField,
            format!("unknown field `{k}`"),
        ));
    }
    let Some(items) = parsed.items else {
        return Err(ApiError::new(
            Code::InvalidField,
            format!("`{key}` must be an array"),
        ));
    };
    if items.is_empty() {
        return Err(ApiError::new(Code::EmptyBatch, format!("`{key}` is empty")));
    }
    if items.len() > MAX_BATCH {
        return Err(ApiError::new(
            Code::BatchTooLarge,
            format!("at most {MAX_BATCH} items per batch, got {}", items.len()),
        ));
    }
    Ok(items)
}

/// A batch's items split by their own parse: the items that parsed, each
/// one's index in the batch, and those refused.
pub struct Split<T> {
    pub good: Vec<T>,
    pub good_index: Vec<usize>,
    pub rejected: Vec<Rejected>,
}

/// Parses every item alone, in batch order; one bad item never blocks the rest.
pub fn split<'a, T>(
    items: &[Item<'a>],
    mut parse: impl FnMut(&Item<'a>) -> Result<T, (ItemCode, String)>,
) -> Split<T> {
    let mut out = Split {
        good: Vec::with_capacity(items.len()),
        good_index: Vec::with_capacity(items.len()),
        rejected: Vec::new(),
    };
    for (i, item) in items.iter().enumerate() {
        match parse(item) {
            Ok(r) => {
                out.good.push(r);
                out.good_index.push(i);
            }
            Err((code, msg)) => out.rejected.push(Rejected::new(i, code, msg)),
        }
    }
    out
}

/// Counts a batch's verdicts — `(accepted, duplicates, flagged)` — and adds
/// the engine's rejections to `rejected` (then sorted by index). `good_index`
/// maps each verdict back to its item's index in the batch.
pub fn tally(
    verdicts: &[Verdict],
    good_index: &[usize],
    rejected: &mut Vec<Rejected>,
) -> (u64, u64, u64) {
    let (mut accepted, mut duplicates, mut flagged) = (0u64, 0u64, 0u64);
    for (v, &i) in verdicts.iter().zip(good_index) {
        match v {
            Verdict::Accepted { flag } => {
                accepted += 1;
                flagged += u64::from(*flag);
            }
            Verdict::Duplicate => duplicates += 1,
            Verdict::Rejected(c) => {
                let (code, msg) = reject(*c);
                rejected.push(Rejected::new(i, code, msg));
            }
        }
    }
    rejected.sort_by_key(|r| r.index);
    (accepted, duplicates, flagged)
}

/// The message for an engine verdict's code.
pub fn reject(code: RejectCode) -> (ItemCode, &'static str) {
    match code {
        RejectCode::InvalidTime => (
            ItemCode::InvalidTime,
            "more than 5 minutes in the future or older than 30 days",
        ),
        RejectCode::TubeFull => (
            ItemCode::TubeFull,
            "the tube already holds the pool maximum",
        ),
        RejectCode::TubeSiteConflict => (
            ItemCode::TubeSiteConflict,
            "the tube was first used at another site",
        ),
        RejectCode::ConflictingResult => (
            ItemCode::ConflictingResult,
            "the tube already has a different result",
        ),
    }
}

// ---------------------------------------------------------------------------
// This file's endpoints: the route table's entries and their OpenAPI operations.
// ---------------------------------------------------------------------------

/// The error codes of a batch upload, for its operation.
pub(crate) fn doc_errors() -> Vec<Code> {
    [
        &JSON_BODY_ERRORS[..],
        &[
            Code::UnknownField,
            Code::InvalidField,
            Code::EmptyBatch,
            Code::BatchTooLarge,
        ],
        &WRITE_ERRORS[..],
    ]
    .concat()
}

/// The rules every batch upload follows, for its operation's description.
pub(crate) fn doc_rules() -> String {
    format!(
        "The body is an object holding exactly the array: another top-level key is \
         `400 unknown_field`, a missing or non-array one `400 invalid_field`; 1 to {MAX_BATCH} items \
         (0: `400 empty_batch`, more: `413 batch_too_large`). Each item is judged alone, in batch \
         order, so one bad item never blocks the rest: refused items are listed in `rejected` \
         (sorted by `index`) and `accepted + duplicates + len(rejected)` is the batch size. The \
         answer is sent only once the accepted items are durable."
    )
}

/// The schema of a refused item, which both batch answers name.
pub(crate) fn schemas() -> Vec<(&'static str, Value)> {
    vec![(
        "Rejected",
        object(
            "One refused item of a batch.",
            &["index", "code", "message"],
            vec![
                ("index", count("The item's 0-based position in the batch.")),
                ("code", {
                    let mut v = enum_of(ItemCode::ALL.iter().map(|c| c.as_str()));
                    v["description"] = json!(
                        ItemCode::ALL
                            .iter()
                            .map(|c| format!("`{}`: {}.", c.as_str(), item_code_meaning(*c)))
                            .collect::<Vec<_>>()
                            .join(" ")
                    );
                    v
                }),
                ("message", string("For humans.")),
            ],
        ),
    )]
}

#[cfg(test)]
#[path = "batch_tests.rs"]
mod tests;

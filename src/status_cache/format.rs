//! What the cache stores: keys derived from a keyed hash of the ID, and values
//! that carry a version, the expiry and the wire JSON of the status.
//!
//! Shared by the Redis and the in-process backends so that both hold exactly
//! the same bytes. No I/O.
//!
//! Key: `rc:s:` + the first 128 bits of HMAC-SHA256(key, ID) in hex, written
//! as two groups of 16 hex digits joined by `:` (`rc:s:0f3a…:9be1…`). The
//! split keeps every run of digits in a key at 16 or fewer, so a data-loss
//! scanner looking for 18-digit resident IDs never flags a hash by chance (a
//! plain 32-digit hex string holds 18 decimal digits in a row about once in
//! 300 keys). 128 bits keep collisions out of reach at any city's size.
//!
//! Value: `VVVVVVVVVVVVVVVV:UUUUUUUUUUUUUUUU:MMMMMMMMMMMMMMMM:MMMMMMMMMMMMMMMM:{json}`
//! — the version and `valid_until` (milliseconds, `ffffffffffffffff` for
//! none) as 16 hex digits each, a MAC as two groups of 16 hex digits, then
//! the status exactly as `GET /v1/status` answers it. Nothing else: no ID,
//! name or phone. The fixed-width header lets the Lua script compare
//! versions and lets a reader check expiry and answer with a slice of the
//! value, without parsing the JSON.
//!
//! The MAC: the first 128 bits of HMAC-SHA256 under a key derived from the
//! cache key, over the person's digest (so a value copied to another
//! person's key fails), the version and expiry header, and the JSON. Anyone
//! who can write to Redis but does not hold the cache key cannot turn a red
//! code green: a value that fails its MAC is a miss ([`Keyer::authentic`]).

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::domain::{PersonId, Timestamp};
use crate::engine::status::Status;

/// Prefix of every status key.
pub const KEY_PREFIX: &str = "rc:s:";
/// Length of a status key in bytes: prefix, 16 hex, `:`, 16 hex.
pub const KEY_LEN: usize = KEY_PREFIX.len() + 16 + 1 + 16;
/// Where the MAC starts in a value: after version and expiry (16 hex, `:`,
/// 16 hex, `:`).
const MAC_AT: usize = 16 + 1 + 16 + 1;
/// Length of the value header: version and expiry, then the MAC (16 hex,
/// `:`, 16 hex, `:`).
pub const HEADER_LEN: usize = MAC_AT + 16 + 1 + 16 + 1;
/// What derives the values' MAC key from the cache key (a key of its own,
/// so a value's MAC never equals an ID's digest).
const VALUE_MAC_LABEL: &[u8] = b"rollcall status cache value MAC v1";
/// `valid_until` of a status that never changes by itself.
const NO_EXPIRY: u64 = u64::MAX;

/// Bits of a version that count changes; the bits above hold the epoch
/// (bumped at every full rewrite), so any version taken after a full
/// rewrite is newer than every version written before it.
pub const SEQ_BITS: u32 = 40;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;

/// The 128-bit keyed digest of one person's ID.
pub type Digest = [u8; 16];
/// A status key, as bytes.
pub type Key = [u8; KEY_LEN];

/// Hashes IDs and authenticates values with the cache's secret key.
#[derive(Clone)]
pub struct Keyer {
    /// Keyed once; each digest clones this state instead of re-keying.
    mac: Hmac<Sha256>,
    /// The values' MAC, keyed once with the derived key.
    value_mac: Hmac<Sha256>,
}

impl Keyer {
    pub fn new(key: &[u8; 32]) -> Keyer {
        let mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
        let mut derive = mac.clone();
        derive.update(VALUE_MAC_LABEL);
        let value_key = derive.finalize().into_bytes();
        Keyer {
            mac,
            value_mac: Hmac::<Sha256>::new_from_slice(&value_key)
                .expect("HMAC takes keys of any length"),
        }
    }

    /// Encodes a status with its version for the person whose digest this
    /// is: header, MAC, then the wire JSON.
    pub fn encode_value(&self, digest: &Digest, version: u64, status: &Status) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + 160);
        let valid = status
            .valid_until
            .map_or(NO_EXPIRY, |t| t.as_millis().max(0) as u64);
        write_hex16(&mut out, version);
        out.push(b':');
        write_hex16(&mut out, valid);
        out.push(b':');
        out.resize(HEADER_LEN, b':');
        write_status_json(&mut out, status);
        let tag = self.value_tag(digest, &out);
        out[MAC_AT..HEADER_LEN].copy_from_slice(&tag);
        out
    }

    /// Whether `raw` carries the MAC this key gives it under this digest
    /// (the Redis key it was read from). Constant-time in the MAC; no
    /// allocation.
    pub fn authentic(&self, digest: &Digest, raw: &[u8]) -> bool {
        raw.len() > HEADER_LEN
            && crate::ct::eq(&self.value_tag(digest, raw), &raw[MAC_AT..HEADER_LEN])
    }

    /// The MAC field for a value (`raw` at least `HEADER_LEN` long; its own
    /// MAC field is not covered): 32 hex digits of HMAC-SHA256 over the
    /// digest, version and expiry, and JSON, in two groups with `:` after each.
    fn value_tag(&self, digest: &Digest, raw: &[u8]) -> [u8; HEADER_LEN - MAC_AT] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut mac = self.value_mac.clone();
        mac.update(digest);
        mac.update(&raw[..MAC_AT]);
        mac.update(&raw[HEADER_LEN..]);
        let full = mac.finalize().into_bytes();
        let mut tag = [b':'; HEADER_LEN - MAC_AT];
        let mut at = 0;
        for (i, b) in full[..16].iter().enumerate() {
            if i == 8 {
                at += 1;
            }
            tag[at] = HEX[usize::from(b >> 4)];
            tag[at + 1] = HEX[usize::from(b & 0xf)];
            at += 2;
        }
        tag
    }

    /// HMAC-SHA256 of the 18-character ID, truncated to 128 bits.
    pub fn digest(&self, person: PersonId) -> Digest {
        let mut mac = self.mac.clone();
        mac.update(&person.ascii());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }

    /// The Redis key of one person.
    pub fn key(&self, person: PersonId) -> Key {
        key_of(&self.digest(person))
    }
}

/// The Redis key for a digest.
pub fn key_of(digest: &Digest) -> Key {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut key = [0u8; KEY_LEN];
    key[..KEY_PREFIX.len()].copy_from_slice(KEY_PREFIX.as_bytes());
    let mut at = KEY_PREFIX.len();
    for (i, b) in digest.iter().enumerate() {
        if i == 8 {
            key[at] = b':';
            at += 1;
        }
        key[at] = HEX[usize::from(b >> 4)];
        key[at + 1] = HEX[usize::from(b & 0xf)];
        at += 2;
    }
    key
}

/// Builds a version from an epoch and a sequence number.
pub fn version(epoch: u64, seq: u64) -> u64 {
    (epoch << SEQ_BITS) | (seq & SEQ_MASK)
}

/// The epoch part of a version.
pub fn epoch_of(version: u64) -> u64 {
    version >> SEQ_BITS
}

/// The first instant from which Asia/Shanghai has been `+08:00` for good
/// (1992-01-01T00:00:00+08:00; its last summer time ended in 1991).
const FIXED_OFFSET_FROM_MS: i64 = 694_195_200_000;
/// The last instant whose local year has four digits (9999-12-31T23:59:59.999+08:00).
const FOUR_DIGIT_YEARS_UNTIL_MS: i64 = 253_402_271_999_999;
const OFFSET_MS: i64 = 8 * 3_600_000;

/// Writes `status` exactly as `serde_json` writes it (the wire JSON of
/// `GET /v1/status`), without chrono's format strings or an allocation per
/// time: a round close encodes a million of these. A property test holds it
/// to `serde_json::to_vec`, so a change of `Status` or of the time format
/// fails a test rather than the wire.
pub fn write_status_json(out: &mut Vec<u8>, status: &Status) {
    out.extend_from_slice(b"{\"color\":\"");
    out.extend_from_slice(status.colour.as_str().as_bytes());
    out.extend_from_slice(b"\",\"reasons\":[");
    for (i, reason) in status.reasons.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"code\":\"");
        out.extend_from_slice(reason.code.as_str().as_bytes());
        out.push(b'"');
        if let Some(round) = &reason.round_id {
            out.extend_from_slice(b",\"round_id\":");
            serde_json::to_writer(&mut *out, round).expect("a string always serialises");
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"valid_until\":");
    write_time(out, status.valid_until);
    out.extend_from_slice(b",\"last_sample_at\":");
    write_time(out, status.last_sample_at);
    out.extend_from_slice(b",\"last_negative_at\":");
    write_time(out, status.last_negative_at);
    out.push(b'}');
}

/// A time as `Timestamp`'s serde writes it: RFC 3339 in Asia/Shanghai,
/// milliseconds only when there are any. Times outside the fixed-offset
/// years go through `Timestamp::to_rfc3339` itself.
fn write_time(out: &mut Vec<u8>, t: Option<Timestamp>) {
    let Some(t) = t else {
        out.extend_from_slice(b"null");
        return;
    };
    out.push(b'"');
    let ms = t.as_millis();
    if (FIXED_OFFSET_FROM_MS..=FOUR_DIGIT_YEARS_UNTIL_MS).contains(&ms) {
        let local = ms + OFFSET_MS;
        let days = local.div_euclid(86_400_000);
        let of_day = local.rem_euclid(86_400_000);
        let (y, m, d) = civil_from_days(days);
        write_digits(out, y as u64, 4);
        out.push(b'-');
        write_digits(out, u64::from(m), 2);
        out.push(b'-');
        write_digits(out, u64::from(d), 2);
        out.push(b'T');
        write_digits(out, (of_day / 3_600_000) as u64, 2);
        out.push(b':');
        write_digits(out, (of_day / 60_000 % 60) as u64, 2);
        out.push(b':');
        write_digits(out, (of_day / 1000 % 60) as u64, 2);
        if of_day % 1000 != 0 {
            out.push(b'.');
            write_digits(out, (of_day % 1000) as u64, 3);
        }
        out.extend_from_slice(b"+08:00");
    } else {
        out.extend_from_slice(t.to_rfc3339().as_bytes());
    }
    out.push(b'"');
}

/// (year, month, day) of a day count from 1970-01-01 (Howard Hinnant's
/// `civil_from_days`), for days from 1970 on.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn write_digits(out: &mut Vec<u8>, mut v: u64, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    for slot in out[start..].iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

fn write_hex16(out: &mut Vec<u8>, v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..16).rev() {
        out.push(HEX[((v >> (shift * 4)) & 0xf) as usize]);
    }
}

/// A value read back from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded<'a> {
    pub version: u64,
    /// Milliseconds since the epoch; `None` if the status never expires.
    pub valid_until_ms: Option<i64>,
    /// The wire JSON.
    pub json: &'a [u8],
}

impl Decoded<'_> {
    /// Whether the status has expired at `now`. An answer whose
    /// `valid_until` has come is never served, whatever Redis's own clock
    /// says about the key's expiry.
    pub fn expired_at(&self, now: Timestamp) -> bool {
        self.valid_until_ms.is_some_and(|v| v <= now.as_millis())
    }
}

/// Decodes a value; `None` if it is not shaped like one this module
/// writes. Says nothing of who wrote it: see [`Keyer::authentic`].
pub fn decode_value(raw: &[u8]) -> Option<Decoded<'_>> {
    if raw.len() <= HEADER_LEN
        || raw[16] != b':'
        || raw[33] != b':'
        || raw[MAC_AT + 16] != b':'
        || raw[HEADER_LEN - 1] != b':'
    {
        return None;
    }
    let version = parse_hex(&raw[..16])?;
    let valid = parse_hex(&raw[17..33])?;
    let json = &raw[HEADER_LEN..];
    if json.first() != Some(&b'{') || json.last() != Some(&b'}') {
        return None;
    }
    Some(Decoded {
        version,
        valid_until_ms: (valid != NO_EXPIRY).then_some(valid.min(i64::MAX as u64) as i64),
        json,
    })
}

/// Milliseconds from `now` until the status expires, for `SET … PX`: `0` for
/// no expiry, at least 1 otherwise (a status already past its `valid_until`
/// lives for a millisecond, and readers treat it as expired at once).
///
/// Relative rather than `PXAT`: expiry is measured on the injected clock, so
/// it holds whatever Redis's clock says. The pipeline's few milliseconds of
/// latency only keep a key slightly longer; readers check `valid_until`
/// themselves, so an expired answer is never served.
pub fn expiry_px(status: &Status, now: Timestamp) -> u64 {
    status
        .valid_until
        .map_or(0, |t| (t.as_millis() - now.as_millis()).max(1) as u64)
}

fn parse_hex(digits: &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for &d in digits {
        let n = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => return None,
        };
        v = (v << 4) | u64::from(n);
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ReasonCode, Timestamp};
    use crate::engine::status::Reason;

    fn person(s: &str) -> PersonId {
        s.parse().unwrap()
    }

    /// A value under a fixed key and digest.
    fn encode_value_for_tests(version: u64, status: &Status) -> Vec<u8> {
        Keyer::new(&[3; 32]).encode_value(&[5; 16], version, status)
    }

    #[test]
    fn a_value_is_authentic_only_unchanged_under_its_key_and_digest() {
        let keyer = Keyer::new(&[3; 32]);
        let digest = keyer.digest(person("61080219850312001X"));
        let red = Status::from_reasons(
            vec![Reason {
                code: ReasonCode::Positive,
                round_id: None,
            }],
            None,
            None,
            None,
        );
        let raw = keyer.encode_value(&digest, version(2, 7), &red);
        assert!(keyer.authentic(&digest, &raw));
        assert!(decode_value(&raw).is_some());
        // The red code turned green, the header kept: the MAC no longer fits.
        let green = keyer.encode_value(&digest, version(2, 7), &Status::green());
        let mut forged = raw[..HEADER_LEN].to_vec();
        forged.extend_from_slice(&green[HEADER_LEN..]);
        assert!(decode_value(&forged).is_some(), "well formed");
        assert!(!keyer.authentic(&digest, &forged));
        // Any byte outside the MAC field changed (version, expiry, JSON).
        for at in [0, 20, HEADER_LEN + 3, raw.len() - 2] {
            let mut v = raw.clone();
            v[at] ^= 1;
            assert!(!keyer.authentic(&digest, &v), "byte {at}");
        }
        // The MAC itself changed.
        let mut v = raw.clone();
        v[MAC_AT] = if v[MAC_AT] == b'0' { b'1' } else { b'0' };
        assert!(!keyer.authentic(&digest, &v));
        // Another person's key, or another cache key.
        let other = keyer.digest(person("110101199003077774"));
        assert!(!keyer.authentic(&other, &raw));
        assert!(!Keyer::new(&[4; 32]).authentic(&digest, &raw));
        // Too short to hold a MAC.
        assert!(!keyer.authentic(&digest, &raw[..HEADER_LEN]));
        assert!(!keyer.authentic(&digest, b""));
    }

    #[test]
    fn the_mac_is_hmac_sha256_under_the_derived_key() {
        let key = [7u8; 32];
        let keyer = Keyer::new(&key);
        let digest = [9u8; 16];
        let raw = keyer.encode_value(&digest, 1, &Status::green());
        let mut derive = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        derive.update(b"rollcall status cache value MAC v1");
        let value_key = derive.finalize().into_bytes();
        let mut mac = Hmac::<Sha256>::new_from_slice(&value_key).unwrap();
        mac.update(&digest);
        mac.update(&raw[..MAC_AT]);
        mac.update(&raw[HEADER_LEN..]);
        let full = hex::encode(mac.finalize().into_bytes());
        let want = format!("{}:{}:", &full[..16], &full[16..32]);
        assert_eq!(std::str::from_utf8(&raw[MAC_AT..HEADER_LEN]).unwrap(), want);
    }

    fn yellow(valid_until: Option<Timestamp>) -> Status {
        Status::from_reasons(
            vec![Reason {
                code: ReasonCode::MissedRound,
                round_id: Some("3".into()),
            }],
            valid_until,
            Some(Timestamp::parse("2022-04-15T09:02:00+08:00").unwrap()),
            None,
        )
    }

    #[test]
    fn keys_hash_the_id_with_the_secret_and_never_hold_it() {
        let p = person("61080219850312001X");
        let a = Keyer::new(&[1; 32]).key(p);
        let b = Keyer::new(&[2; 32]).key(p);
        assert_ne!(a, b, "the secret changes every key");
        assert_eq!(a, Keyer::new(&[1; 32]).key(p), "stable for one secret");
        let text = std::str::from_utf8(&a).unwrap();
        assert!(text.starts_with("rc:s:"));
        assert_eq!(text.len(), KEY_LEN);
        assert!(!text.contains("61080219850312001X"));
    }

    #[test]
    fn keys_are_hmac_sha256_of_the_id_string() {
        let p = person("61080219850312001X");
        let mut mac = Hmac::<Sha256>::new_from_slice(&[7; 32]).unwrap();
        mac.update(b"61080219850312001X");
        let full = hex::encode(mac.finalize().into_bytes());
        let key = Keyer::new(&[7; 32]).key(p);
        let expected = format!("rc:s:{}:{}", &full[..16], &full[16..32]);
        assert_eq!(std::str::from_utf8(&key).unwrap(), expected);
    }

    #[test]
    fn no_key_holds_more_than_sixteen_digits_in_a_row() {
        let keyer = Keyer::new(&[9; 32]);
        for d in 0..20_000u64 {
            let p =
                PersonId::from_u64(61_080_219_850_312_000 + d % 1000 + (d / 1000) * 1000).unwrap();
            let key = keyer.key(p);
            let longest = key
                .split(|b| !b.is_ascii_digit())
                .map(<[u8]>::len)
                .max()
                .unwrap();
            assert!(longest <= 16);
        }
    }

    #[test]
    fn values_round_trip_with_version_and_expiry() {
        let until = Timestamp::parse("2022-04-20T08:00:00+08:00").unwrap();
        let status = yellow(Some(until));
        let raw = encode_value_for_tests(version(3, 42), &status);
        let d = decode_value(&raw).unwrap();
        assert_eq!(d.version, version(3, 42));
        assert_eq!(epoch_of(d.version), 3);
        assert_eq!(d.valid_until_ms, Some(until.as_millis()));
        let back: Status = serde_json::from_slice(d.json).unwrap();
        assert_eq!(back, status);
        assert_eq!(d.json, serde_json::to_vec(&status).unwrap().as_slice());
        assert!(!d.expired_at(until.plus_millis(-1)));
        assert!(d.expired_at(until));
    }

    #[test]
    fn a_status_without_valid_until_never_expires() {
        let raw = encode_value_for_tests(1, &yellow(None));
        let d = decode_value(&raw).unwrap();
        assert_eq!(d.valid_until_ms, None);
        assert!(!d.expired_at(Timestamp::from_millis(i64::MAX / 2)));
        assert_eq!(expiry_px(&yellow(None), Timestamp::from_millis(0)), 0);
    }

    #[test]
    fn expiry_is_relative_to_the_injected_clock_and_never_zero() {
        let now = Timestamp::parse("2022-04-19T08:00:00+08:00").unwrap();
        let status = yellow(Some(now.plus_millis(90_000)));
        assert_eq!(expiry_px(&status, now), 90_000);
        assert_eq!(expiry_px(&status, now.plus_millis(200_000)), 1);
    }

    #[test]
    fn versions_compare_as_their_hex_headers_do() {
        // The Lua script compares the 16-digit headers; they must order as the numbers.
        let pairs = [
            (version(1, 5), version(1, 6)),
            (version(1, SEQ_MASK), version(2, 0)),
        ];
        for (a, b) in pairs {
            assert!(a < b);
            assert!(
                encode_value_for_tests(a, &Status::green())[..16]
                    < encode_value_for_tests(b, &Status::green())[..16]
            );
        }
    }

    #[test]
    fn the_fixed_offset_bounds_are_the_instants_they_name() {
        assert_eq!(
            Timestamp::parse("1992-01-01T00:00:00+08:00")
                .unwrap()
                .as_millis(),
            FIXED_OFFSET_FROM_MS
        );
        assert_eq!(
            Timestamp::parse("9999-12-31T23:59:59.999+08:00")
                .unwrap()
                .as_millis(),
            FOUR_DIGIT_YEARS_UNTIL_MS
        );
    }

    fn serde_bytes(status: &Status) -> Vec<u8> {
        serde_json::to_vec(status).unwrap()
    }

    fn fast_bytes(status: &Status) -> Vec<u8> {
        let mut out = Vec::new();
        write_status_json(&mut out, status);
        out
    }

    #[test]
    fn the_wire_json_matches_serde_at_the_edges() {
        let edges = [
            i64::MIN / 4,
            -1,
            0,
            FIXED_OFFSET_FROM_MS - 1,
            FIXED_OFFSET_FROM_MS,
            951_753_600_000, // 2000-02-29 local
            1_650_327_300_250,
            4_107_456_000_000, // 2100-02-28/03-01
            FOUR_DIGIT_YEARS_UNTIL_MS,
            FOUR_DIGIT_YEARS_UNTIL_MS + 1,
        ];
        for ms in edges {
            let t = Some(Timestamp::from_millis(ms));
            let status = Status::from_reasons(
                vec![
                    Reason {
                        code: ReasonCode::MissedRound,
                        round_id: Some("12".into()),
                    },
                    Reason {
                        code: ReasonCode::Positive,
                        round_id: None,
                    },
                ],
                t,
                t,
                None,
            );
            assert_eq!(
                String::from_utf8(fast_bytes(&status)).unwrap(),
                String::from_utf8(serde_bytes(&status)).unwrap(),
                "at {ms}"
            );
        }
        assert_eq!(fast_bytes(&Status::green()), serde_bytes(&Status::green()));
    }

    proptest::proptest! {
        #[test]
        fn the_wire_json_matches_serde(
            times in proptest::collection::vec(
                proptest::option::of(0i64..4_200_000_000_000), 3),
            codes in proptest::collection::vec(0usize..5, 0..4),
            round in "[0-9a-z\"\\\\]{0,4}",
        ) {
            let reasons = codes
                .iter()
                .map(|&c| Reason {
                    code: ReasonCode::ALL[c],
                    round_id: (c == 2).then(|| round.clone()),
                })
                .collect();
            let at = |i: usize| times[i].map(Timestamp::from_millis);
            let status = Status::from_reasons(reasons, at(0), at(1), at(2));
            proptest::prop_assert_eq!(fast_bytes(&status), serde_bytes(&status));
        }
    }

    #[test]
    fn foreign_or_damaged_values_are_not_decoded() {
        assert!(decode_value(b"").is_none());
        assert!(decode_value(b"hello").is_none());
        let mut raw = encode_value_for_tests(1, &Status::green());
        raw[3] = b'z';
        assert!(decode_value(&raw).is_none());
        let mut raw = encode_value_for_tests(1, &Status::green());
        raw.pop();
        assert!(decode_value(&raw).is_none());
    }

    #[test]
    fn a_value_holds_no_run_of_digits_longer_than_sixteen() {
        let raw = encode_value_for_tests(
            version(12, 9_999_999),
            &yellow(Some(
                Timestamp::parse("2022-04-20T08:00:00.123+08:00").unwrap(),
            )),
        );
        let longest = raw
            .split(|b| !b.is_ascii_digit())
            .map(<[u8]>::len)
            .max()
            .unwrap();
        assert!(longest <= 16);
    }
}

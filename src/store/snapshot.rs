//! Snapshot files: the engine's state at a log position, so a start-up loads
//! it and replays only the log after it, and retention may delete log rows a
//! snapshot holds.
//!
//! A file is `snapshot-<seq, 20 digits>.rcsnap` in the data directory:
//! a header (`RCSNAP` magic, format version, the `seq` of the last event it
//! holds, the payload's length), the payload (`Engine::encode_snapshot`),
//! and a SHA-256 of everything before it. It is written to a `.tmp` file,
//! fsynced, renamed into place and the directory fsynced, so a crash leaves
//! either the whole file or a leftover temporary one (removed at the next
//! start). A file that is short, fails its checksum, has another format
//! version or does not decode is skipped with a log line and the one before
//! it is used; the newest [`KEEP`] are kept.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::engine::{Engine, Policy, snapshot::FORMAT};

/// How many snapshot files are kept (the log keeps everything after the
/// oldest of them, so one bad file costs no record).
pub const KEEP: usize = 2;

const MAGIC: &[u8; 8] = b"RCSNAP\0\0";
const HEADER: usize = 8 + 4 + 8 + 8;
const PREFIX: &str = "snapshot-";
const SUFFIX: &str = ".rcsnap";
const TMP: &str = ".tmp";

fn name(seq: u64) -> String {
    format!("{PREFIX}{seq:020}{SUFFIX}")
}

/// Where [`write`] puts the snapshot after event `seq`.
pub fn path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(name(seq))
}

/// The snapshot files in `dir`, newest (highest `seq`) first.
pub fn list(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let file = entry.file_name();
        let Some(file) = file.to_str() else { continue };
        if let Some(seq) = file
            .strip_prefix(PREFIX)
            .and_then(|s| s.strip_suffix(SUFFIX))
            .filter(|s| s.len() == 20)
            .and_then(|s| s.parse::<u64>().ok())
        {
            out.push((seq, entry.path()));
        }
    }
    out.sort_unstable_by_key(|&(seq, _)| std::cmp::Reverse(seq));
    Ok(out)
}

/// Writes the snapshot of the state after event `seq`, then removes all but
/// the newest [`KEEP`]. Returns the file's path and size.
pub fn write(dir: &Path, seq: u64, payload: &[u8]) -> std::io::Result<(PathBuf, u64)> {
    let path = path(dir, seq);
    let tmp = dir.join(format!("{}{TMP}", name(seq)));
    let mut header = Vec::with_capacity(HEADER);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&FORMAT.to_le_bytes());
    header.extend_from_slice(&seq.to_le_bytes());
    header.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    let mut h = Sha256::new();
    h.update(&header);
    h.update(payload);
    let sum = h.finalize();
    {
        let mut f = std::io::BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        f.write_all(&header)?;
        f.write_all(payload)?;
        f.write_all(&sum)?;
        let f = f
            .into_inner()
            .map_err(std::io::IntoInnerError::into_error)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, &path)?;
    File::open(dir)?.sync_all()?;
    for (_, old) in list(dir)?.into_iter().skip(KEEP) {
        fs::remove_file(&old)?;
    }
    let size = fs::metadata(&path)?.len();
    Ok((path, size))
}

/// A snapshot file read whole, its header checked; its checksum is
/// checked by [`Loaded::check_sum`], which may run beside the decoding.
struct Loaded {
    seq: u64,
    bytes: Vec<u8>,
}

impl Loaded {
    fn open(path: &Path) -> Result<Loaded, String> {
        Loaded::parse(fs::read(path).map_err(|e| e.to_string())?)
    }

    /// A snapshot's bytes, however they were read (a file here, parts of a
    /// row in PostgreSQL), with their header checked.
    fn parse(bytes: Vec<u8>) -> Result<Loaded, String> {
        if bytes.len() < HEADER + 32 || &bytes[..8] != MAGIC {
            return Err("not a whole rollcall snapshot (short, or no magic)".into());
        }
        let le64 = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
        let format = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if format != FORMAT {
            return Err(format!(
                "snapshot format {format}, this build reads {FORMAT}"
            ));
        }
        let seq = le64(12);
        let len = usize::try_from(le64(20)).map_err(|_| "an impossible length".to_owned())?;
        if Some(bytes.len()) != len.checked_add(HEADER + 32) {
            return Err(format!(
                "{} bytes where the header says {len} and {}",
                bytes.len(),
                HEADER + 32
            ));
        }
        Ok(Loaded { seq, bytes })
    }

    fn payload(&self) -> &[u8] {
        &self.bytes[HEADER..self.bytes.len() - 32]
    }

    fn check_sum(&self) -> Result<(), String> {
        let (body, sum) = self.bytes.split_at(self.bytes.len() - 32);
        if Sha256::digest(body).as_slice() == sum {
            Ok(())
        } else {
            Err("checksum mismatch".into())
        }
    }
}

/// The payload of a snapshot file, with its `seq`, if the file is whole.
#[cfg(test)]
fn read(path: &Path) -> Result<(u64, Vec<u8>), String> {
    let file = Loaded::open(path)?;
    file.check_sum()?;
    Ok((file.seq, file.payload().to_vec()))
}

/// The engine a snapshot file holds.
fn load(
    path: &Path,
    seq: u64,
    policy: Policy,
    pool: &Arc<rayon::ThreadPool>,
) -> Result<Engine, String> {
    decode(&Loaded::open(path)?, seq, policy, pool)
}

/// The engine the bytes of a snapshot (as a file holds them) hold, which
/// should be the state after event `seq`.
pub fn decode_bytes(
    bytes: Vec<u8>,
    seq: u64,
    policy: Policy,
    pool: &Arc<rayon::ThreadPool>,
) -> Result<Engine, String> {
    decode(&Loaded::parse(bytes)?, seq, policy, pool)
}

/// The checksum is computed on another thread while the payload decodes
/// (the decoder trusts nothing, so decoding a damaged payload is an error or
/// a state thrown away, never a panic): a restart waits for the longer of
/// the two, not their sum.
fn decode(
    file: &Loaded,
    seq: u64,
    policy: Policy,
    pool: &Arc<rayon::ThreadPool>,
) -> Result<Engine, String> {
    if file.seq != seq {
        return Err(format!(
            "holds seq {}, not the {seq} it is stored as",
            file.seq
        ));
    }
    let (sum, engine) = std::thread::scope(|s| {
        let sum = s.spawn(|| file.check_sum());
        let engine = Engine::decode_snapshot(file.payload(), policy, pool.clone());
        (sum.join(), engine)
    });
    sum.map_err(|_| "the checksum thread panicked".to_owned())??;
    engine
}

/// Removes temporary files a crash left behind while writing a snapshot.
pub fn remove_leftovers(dir: &Path) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let file = entry.file_name();
        if file
            .to_str()
            .is_some_and(|f| f.starts_with(PREFIX) && f.ends_with(TMP))
        {
            tracing::warn!(file = ?entry.path(), "removing a snapshot left half-written");
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// The newest snapshot in `dir` that is whole and decodes, as an engine,
/// with the `seq` it holds; bad ones are skipped with a log line.
pub fn load_newest(
    dir: &Path,
    policy: Policy,
    pool: &Arc<rayon::ThreadPool>,
) -> std::io::Result<Option<(u64, Engine)>> {
    for (seq, path) in list(dir)? {
        match load(&path, seq, policy, pool) {
            Ok(engine) => return Ok(Some((seq, engine))),
            Err(why) => tracing::warn!(
                file = %path.display(),
                %why,
                "ignoring a snapshot that is not whole; trying the one before it"
            ),
        }
    }
    Ok(None)
}

/// The `seq` of the oldest snapshot kept, once [`KEEP`] of them are: what
/// retention may purge up to (with fewer, one bad file would cost records).
pub fn oldest_kept(dir: &Path) -> std::io::Result<Option<u64>> {
    let kept = list(dir)?;
    Ok((kept.len() >= KEEP).then(|| kept[KEEP - 1].0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_reads_back_and_any_damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let payload: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let (path, size) = write(dir.path(), 42, &payload).unwrap();
        assert_eq!(size as usize, HEADER + payload.len() + 32);
        assert_eq!(read(&path).unwrap(), (42, payload.clone()));
        let good = fs::read(&path).unwrap();
        // A flipped byte anywhere, a cut, another version: refused.
        for at in [0, 9, 15, 25, HEADER + 7, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 0x40;
            fs::write(&path, &bad).unwrap();
            assert!(read(&path).is_err(), "a flipped byte at {at}");
        }
        fs::write(&path, &good[..good.len() - 10]).unwrap();
        assert!(read(&path).is_err(), "cut short");
        fs::write(&path, &good[..5]).unwrap();
        assert!(read(&path).is_err(), "torn header");
    }

    #[test]
    fn only_the_newest_two_are_kept_and_leftover_temporaries_go() {
        let dir = tempfile::tempdir().unwrap();
        for seq in [5, 9, 7, 12] {
            write(dir.path(), seq, b"x").unwrap();
        }
        let seqs: Vec<u64> = list(dir.path())
            .unwrap()
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(seqs, vec![12, 9]);
        assert_eq!(oldest_kept(dir.path()).unwrap(), Some(9));
        let tmp = dir.path().join(format!("{}{TMP}", name(13)));
        fs::write(&tmp, b"half").unwrap();
        assert_eq!(
            list(dir.path()).unwrap().len(),
            2,
            "a temporary is not a snapshot"
        );
        remove_leftovers(dir.path()).unwrap();
        assert!(!tmp.exists());
    }
}

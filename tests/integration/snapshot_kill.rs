//! A real process killed with SIGKILL while it writes a snapshot: the test
//! binary runs itself as the child (a store taking record batches and
//! writing a snapshot after each), the parent watches the data directory
//! and kills the child the moment a snapshot's temporary file appears,
//! several times over the same directory. Each restart removes the torn
//! file, loads the newest whole snapshot, replays the log after it and goes
//! on; at the end every acknowledged record is there.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rollcall::engine::clock::ManualClock;

use crate::store::{now0, open, pid, record};

/// Set in the child: the data directory to write into.
const CHILD: &str = "ROLLCALL_TEST_SNAPSHOT_KILL_DIR";
const BATCH: u64 = 5_000;
const TEST: &str = "snapshot_kill::a_process_killed_while_writing_a_snapshot_loses_nothing";

/// The child: batches of records for new people, one tube each, a snapshot
/// after each batch; prints `acked K` once batch K is durable.
fn child(dir: &Path) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let clock = Arc::new(ManualClock::new(now0()));
        let (store, engine) = open(dir, &clock);
        let mut k = engine.read().record_count() / BATCH;
        loop {
            let items = (k * BATCH..(k + 1) * BATCH)
                .map(|n| record(n, n, now0().plus_millis(-60_000)))
                .collect();
            store.records(items).await.expect("a durable batch");
            println!("acked {k}");
            store.snapshot().await.expect("a snapshot");
            k += 1;
        }
    });
}

fn half_written(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|d| {
        d.flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".rcsnap.tmp"))
    })
}

#[test]
fn a_process_killed_while_writing_a_snapshot_loses_nothing() {
    if let Some(dir) = std::env::var_os(CHILD) {
        child(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut acked: Option<u64> = None;
    let mut kills_mid_write = 0;
    for round in 0..4 {
        let mut c = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
            .env(CHILD, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the child starts");
        let out = BufReader::new(c.stdout.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = std::thread::spawn(move || {
            for k in out
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| l.strip_prefix("acked ").and_then(|k| k.parse::<u64>().ok()))
            {
                let _ = tx.send(k);
            }
        });
        // Once it has reopened the directory (removing the last torn file)
        // and written a few batches, kill it as soon as a snapshot is being
        // written.
        for _ in 0..2 + round {
            let k = rx
                .recv_timeout(Duration::from_mins(1))
                .expect("the child acknowledges a batch");
            acked = acked.max(Some(k));
        }
        let started = Instant::now();
        let mut mid_write = false;
        while started.elapsed() < Duration::from_mins(1) {
            if half_written(dir.path()) {
                mid_write = true;
                break;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        c.kill().expect("SIGKILL");
        c.wait().unwrap();
        kills_mid_write += usize::from(mid_write);
        lines.join().unwrap();
        acked = acked.max(rx.try_iter().max());
    }
    assert!(
        kills_mid_write >= 3,
        "only {kills_mid_write} of 4 kills hit a snapshot being written"
    );
    let acked = acked.expect("the children acknowledged batches");
    let clock = Arc::new(ManualClock::new(now0()));
    let (store, engine) = open(dir.path(), &clock);
    assert!(
        !half_written(dir.path()),
        "the torn file was removed at the start"
    );
    let e = engine.read();
    let held = e.record_count();
    assert!(
        held >= (acked + 1) * BATCH,
        "{held} records held, {} acknowledged",
        (acked + 1) * BATCH
    );
    for n in 0..(acked + 1) * BATCH {
        let st = e.status(pid(n), now0());
        assert!(st.last_sample_at.is_some(), "person {n}'s record was lost");
    }
    drop(e);
    drop(store);
}

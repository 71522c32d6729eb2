//! Crash safety: a child `rollcall serve` takes batches from concurrent
//! clients and is killed with SIGKILL part-way. After a restart every record
//! of every acknowledged batch is there, and no unacknowledged batch is half
//! there.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::json;

use crate::helpers::{ADMIN, free_port, pid};

/// Every batch sent: its people, and whether the server acknowledged it.
type Sent = Arc<Mutex<Vec<(Vec<String>, bool)>>>;

fn spawn_server(data: &std::path::Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_rollcall"))
        .args([
            "serve",
            "--data",
            data.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("ROLLCALL_ADMIN_TOKEN", ADMIN)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("rollcall serve starts")
}

async fn wait_ready(client: &reqwest::Client, base: &str) {
    for _ in 0..300 {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server did not become ready");
}

/// A batch of `n` records, one person each, identified by (client, batch).
fn batch(client: u32, b: u32, n: u32, at: &str) -> (Vec<String>, serde_json::Value) {
    let ids: Vec<String> = (0..n)
        .map(|i| {
            let k = client * 100_000 + b * 100 + i;
            // Spread people over birth days so the 3-digit sequence never overflows.
            let day = 1 + (k / 1000) % 28;
            let month = 1 + (k / 28_000) % 12;
            pid(&format!("1990{month:02}{day:02}"), k % 1000)
        })
        .collect();
    let recs: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| json!({"person_id": id, "tube_id": format!("C{client}B{b}T{}", i / 10), "collected_at": at}))
        .collect();
    (ids, json!({ "records": recs }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_server_loses_no_acknowledged_record_and_half_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut child = spawn_server(dir.path(), port);
    wait_ready(&client, &base).await;
    let r = client
        .post(format!("{base}/v1/tokens"))
        .bearer_auth(ADMIN)
        .json(&json!({"role": "scanner", "name": "crash test", "site": "S01"}))
        .send()
        .await
        .unwrap();
    let scanner = r.json::<serde_json::Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let at = rollcall::domain::Timestamp::from_datetime(chrono::Utc::now())
        .plus_millis(-60_000)
        .to_rfc3339();

    // (people, acknowledged?) per batch sent.
    let sent: Sent = Arc::default();
    let mut tasks = Vec::new();
    for c in 0..6u32 {
        let (client, base, scanner, at, sent) = (
            client.clone(),
            base.clone(),
            scanner.clone(),
            at.clone(),
            sent.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for b in 0..400u32 {
                let (ids, body) = batch(c, b, 50, &at);
                let ix = {
                    let mut s = sent.lock();
                    s.push((ids, false));
                    s.len() - 1
                };
                let r = client
                    .post(format!("{base}/v1/records"))
                    .bearer_auth(&scanner)
                    .json(&body)
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().is_success() => {
                        let j: serde_json::Value = r.json().await.unwrap_or_default();
                        if j["accepted"] == 50 {
                            sent.lock()[ix].1 = true;
                        }
                    }
                    _ => return,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    for t in tasks {
        let _ = t.await;
    }
    let sent = sent.lock().clone();
    let acked = sent.iter().filter(|(_, a)| *a).count();
    assert!(
        acked > 10,
        "the server acknowledged {acked} batches before the kill; too few to test"
    );

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = spawn_server(dir.path(), port);
    wait_ready(&client, &base).await;
    let mut half = Vec::new();
    for (n, (ids, was_acked)) in sent.iter().enumerate() {
        let mut present = 0;
        for id in ids {
            let st: serde_json::Value = client
                .get(format!("{base}/v1/status/{id}"))
                .bearer_auth(ADMIN)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            present += usize::from(st["last_sample_at"].is_string());
        }
        if *was_acked {
            assert_eq!(present, ids.len(), "acknowledged batch {n} lost records");
        } else if present != 0 && present != ids.len() {
            half.push((n, present));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        half.is_empty(),
        "unacknowledged batches half present: {half:?}"
    );
}

//! The HTTP contract end to end: the real server on port 0, its own data
//! directory and its own redis-server.

use serde_json::json;

use crate::helpers::*;
use rollcall::domain::Timestamp;

const HOUR: i64 = 3_600_000;
const A: &str = "崇文路街道/学院社区";
const B: &str = "崇文路街道/南苑社区";

fn t(ts: Timestamp) -> String {
    ts.to_rfc3339()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_day_from_register_to_close_gives_the_right_lists_and_colours() {
    let app = spawn_app().await;
    let (csv, people) = small_city(5);
    let r = app.register(&csv).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"residents": 40, "inserted": 40, "updated": 0, "unchanged": 0})
    );
    let r = app.heads(HEADS_CSV).await;
    assert_eq!(r.json()["heads"], 2);

    let now = app.now();
    let r = app
        .create_round(
            ADMIN,
            &[A],
            now.plus_millis(-2 * HOUR),
            now.plus_millis(HOUR),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let rid = r.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(r.json()["state"], "open");
    assert_eq!(r.json()["counts"]["in_scope"], 20);
    assert_eq!(r.json()["closed_at"], serde_json::Value::Null);

    let (_, s1) = app.token("scanner", Some("S01"), None).await;
    let (_, s2) = app.token("scanner", Some("S02"), None).await;
    let (_, lab) = app.token("lab", None, None).await;
    let (_, gate) = app.token("gate", None, None).await;
    let (_, official) = app.token("official", None, Some(A)).await;

    // Community A: the first 12 people are sampled, 3 per tube.
    let in_a: Vec<_> = people.iter().filter(|(_, a)| a.starts_with(A)).collect();
    let collected = t(now.plus_millis(-HOUR));
    let mut recs = Vec::new();
    for (i, (id, _)) in in_a.iter().take(12).enumerate() {
        recs.push(
            json!({"person_id": id, "tube_id": format!("T{}", i / 3), "collected_at": collected}),
        );
    }
    // A resend and a bad ID in the same batch.
    recs.push(recs[0].clone());
    recs.push(
        json!({"person_id": "61080219850312001Y", "tube_id": "T9", "collected_at": collected}),
    );
    let r = app.records(&s1, json!(recs)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["accepted"], 12);
    assert_eq!(j["duplicates"], 1);
    assert_eq!(j["unregistered"], 0);
    assert_eq!(
        j["rejected"],
        json!([{"index": 13, "code": "invalid_person_id", "message": j["rejected"][0]["message"]}])
    );

    // Another site may not use S01's tube.
    let r = app
        .records(
            &s2,
            json!([{"person_id": in_a[12].0, "tube_id": "T0", "collected_at": collected}]),
        )
        .await;
    assert_eq!(r.json()["rejected"][0]["code"], "tube_site_conflict");

    // Tube T1 tests positive: its three members turn yellow pool_positive.
    let r = app
        .results(
            &lab,
            json!([{"tube_id": "T1", "result": "positive", "reported_at": t(now)},
                              {"tube_id": "T0", "result": "negative", "reported_at": t(now)}]),
        )
        .await;
    assert_eq!(r.json()["accepted"], 2, "{}", r.text());
    let st = app.status(&gate, &in_a[3].0).await.json();
    assert_eq!(st["color"], "yellow");
    assert_eq!(st["reasons"], json!([{"code": "pool_positive"}]));
    let st = app.status(&gate, &in_a[0].0).await.json();
    assert_eq!(st["color"], "green");
    assert!(st["last_negative_at"].is_string());

    // Before the close: 8 missing in A.
    let r = app.get(&format!("/v1/rounds/{rid}"), &official).await;
    assert_eq!(r.json()["counts"]["missing"], 8, "{}", r.text());

    let r = app.close_round(&official, &rid).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["flipped"], 8);
    assert_eq!(r.json()["round"]["state"], "closed");
    let r = app.close_round(ADMIN, &rid).await;
    assert_eq!(r.json()["flipped"], 0, "closing twice flips nobody");

    let missing_one = &in_a[15].0;
    let st = app.status(&gate, missing_one).await.json();
    assert_eq!(st["color"], "yellow");
    assert_eq!(
        st["reasons"],
        json!([{"code": "missed_round", "round_id": rid}])
    );

    // The missing list: masked, sorted, with the nearest head.
    let r = app
        .get(&format!("/v1/rounds/{rid}/missing"), &official)
        .await;
    let j = r.json();
    assert_eq!(j["total"], 8, "{}", r.text());
    assert_eq!(j["area"], A);
    let first = &j["people"][0];
    assert!(first["person_id"].as_str().unwrap().contains("********"));
    let areas: Vec<String> = j["people"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| format!("{}|{}|{}", p["area"], p["household"], p["name"]))
        .collect();
    let mut sorted = areas.clone();
    sorted.sort();
    assert_eq!(areas, sorted);
    for p in j["people"].as_array().unwrap() {
        assert!(
            p["head"].is_object(),
            "every person in A has a head (community or floor)"
        );
    }

    // A late record inside the window clears the flag and counts as late.
    let r = app
        .records(
            &s1,
            json!([{"person_id": missing_one, "tube_id": "T20", "collected_at": collected}]),
        )
        .await;
    assert_eq!(r.json()["accepted"], 1);
    let st = app.status(&gate, missing_one).await.json();
    assert_eq!(st["color"], "green", "{st}");
    let c = app.get(&format!("/v1/rounds/{rid}"), ADMIN).await.json()["counts"].clone();
    assert_eq!(
        c,
        json!({"in_scope": 20, "sampled": 13, "late": 1, "made_up": 0, "exempt": 0, "missing": 7})
    );

    // Coverage adds up at every level.
    let r = app
        .get(
            &format!("/v1/rounds/{rid}/coverage?area={A}&depth=2"),
            &official,
        )
        .await;
    let cov = r.json();
    assert_eq!(cov["in_scope"], 20, "{}", r.text());
    let kids = cov["children"].as_array().unwrap();
    assert_eq!(kids.len(), 2);
    let sum: u64 = kids.iter().map(|k| k["missing"].as_u64().unwrap()).sum();
    assert_eq!(sum, 7);
    assert_eq!(kids[0]["children"].as_array().unwrap().len(), 1);

    // The audit trail has the list pull and the close.
    let r = app.get("/v1/audit", ADMIN).await;
    let actions: Vec<String> = r.json()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    for a in [
        "register_import",
        "heads_import",
        "token_create",
        "round_create",
        "round_close",
        "missing_list",
    ] {
        assert!(
            actions.contains(&a.to_owned()),
            "{a} missing from {actions:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_is_held_to_its_endpoints() {
    let app = spawn_with(Opts {
        redis: false,
        ..Opts::default()
    })
    .await;
    let (csv, people) = small_city(2);
    app.register(&csv).await;
    let now = app.now();
    let rb = app
        .create_round(ADMIN, &[B], now.plus_millis(-HOUR), now.plus_millis(HOUR))
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, scanner) = app.token("scanner", Some("S01"), None).await;
    let (_, lab) = app.token("lab", None, None).await;
    let (_, gate) = app.token("gate", None, None).await;
    let (_, off_a) = app.token("official", None, Some(A)).await;
    let pid_a = &people[0].0;
    let pid_b = &people.iter().find(|(_, a)| a.starts_with(B)).unwrap().0;

    // No token, unknown token.
    let r = app
        .req(reqwest::Method::GET, "/v1/rounds", None, None)
        .await;
    assert_eq!((r.status, r.code().as_str()), (401, "unauthorized"));
    let r = app.get("/v1/rounds", "nope").await;
    assert_eq!((r.status, r.code().as_str()), (401, "unauthorized"));

    // Roles without the permission: 403 forbidden.
    for tok in [&scanner, &lab, &gate, &off_a] {
        assert_eq!(app.get("/v1/audit", tok).await.code(), "forbidden");
        assert_eq!(
            app.post("/v1/tokens", tok, &json!({"role": "gate", "name": "x"}))
                .await
                .code(),
            "forbidden"
        );
    }
    for tok in [&scanner, &lab, &off_a] {
        assert_eq!(app.status(tok, pid_a).await.code(), "forbidden");
    }
    for tok in [&gate, &lab, &off_a] {
        let r = app
            .records(
                tok,
                json!([{"person_id": pid_a, "tube_id": "X1", "collected_at": t(now)}]),
            )
            .await;
        assert_eq!((r.status, r.code().as_str()), (403, "forbidden"));
    }
    for tok in [&gate, &scanner, &off_a] {
        let r = app
            .results(
                tok,
                json!([{"tube_id": "X1", "result": "negative", "reported_at": t(now)}]),
            )
            .await;
        assert_eq!(r.code(), "forbidden");
    }
    for tok in [&gate, &scanner, &lab] {
        assert_eq!(app.get("/v1/exemptions", tok).await.code(), "forbidden");
        assert_eq!(app.get("/v1/repeat-missing", tok).await.code(), "forbidden");
        let r = app
            .post_csv(
                "/v1/exemptions/import",
                tok,
                "person_id,reason,from,until,note\n",
            )
            .await;
        assert_eq!((r.status, r.code().as_str()), (403, "forbidden"));
        assert_eq!(app.get("/v1/rounds", tok).await.code(), "forbidden");
        assert_eq!(
            app.get(&format!("/v1/residents/{pid_a}"), tok).await.code(),
            "forbidden"
        );
    }

    // An official outside their area: 403 out_of_scope.
    for path in [
        format!("/v1/rounds/{rb}"),
        format!("/v1/rounds/{rb}/missing?area={B}"),
        format!("/v1/rounds/{rb}/coverage?area={B}"),
        format!("/v1/rounds/{rb}/progress?area={B}"),
        format!("/v1/exemptions?area={B}"),
        format!("/v1/repeat-missing?area={B}"),
    ] {
        let r = app.get(&path, &off_a).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (403, "out_of_scope"),
            "{path}"
        );
    }
    let r = app
        .create_round(&off_a, &[B], now.plus_millis(-HOUR), now.plus_millis(HOUR))
        .await;
    assert_eq!(r.code(), "out_of_scope");
    let r = app
        .post(
            "/v1/exemptions",
            &off_a,
            &json!({"person_id": pid_b, "reason": "away", "from": t(now), "until": t(now.plus_millis(HOUR))}),
        )
        .await;
    assert_eq!(r.code(), "unknown_resident", "as if not registered");
    let r = app.get(&format!("/v1/residents/{pid_b}"), &off_a).await;
    assert_eq!((r.status, r.code().as_str()), (404, "unknown_resident"));
    assert_eq!(
        app.get(&format!("/v1/residents/{pid_a}"), &off_a)
            .await
            .status,
        200
    );
    let listed = app.get("/v1/rounds", &off_a).await.json();
    assert_eq!(
        listed["rounds"].as_array().unwrap().len(),
        0,
        "round B does not overlap A"
    );

    // Unmasking is for admins only.
    let r = app
        .get(
            &format!("/v1/rounds/{rb}/missing?area={A}&unmask=true"),
            &off_a,
        )
        .await;
    assert_eq!(r.code(), "forbidden");

    // A revoked token stops working at once.
    let (id, tok) = app.token("gate", None, None).await;
    assert_eq!(app.status(&tok, pid_a).await.status, 200);
    assert_eq!(
        app.delete(&format!("/v1/tokens/{id}"), ADMIN).await.status,
        204
    );
    assert_eq!(app.status(&tok, pid_a).await.code(), "unauthorized");
    assert_eq!(
        app.delete("/v1/tokens/999", ADMIN).await.code(),
        "unknown_token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_batches_get_the_contracts_codes_and_store_nothing() {
    let app = spawn_with(Opts {
        redis: false,
        ..Opts::default()
    })
    .await;
    let (csv, people) = small_city(3);
    app.register(&csv).await;
    let (_, scanner) = app.token("scanner", Some("S01"), None).await;
    let now = app.now();
    let id = &people[0].0;
    let good = json!({"person_id": id, "tube_id": "Z1", "collected_at": t(now)});

    let cases = [
        (json!({"records": [], }), 400, "empty_batch"),
        (
            json!({"records": [good.clone()], "note": 1}),
            400,
            "unknown_field",
        ),
        (json!({}), 400, "invalid_field"),
        (json!({"records": good.clone()}), 400, "invalid_field"),
        (json!({"records": null}), 400, "invalid_field"),
        (
            json!({"records": vec![good.clone(); 10_001]}),
            413,
            "batch_too_large",
        ),
    ];
    for (body, status, code) in cases {
        let r = app.post("/v1/records", &scanner, &body).await;
        assert_eq!((r.status, r.code().as_str()), (status, code));
    }
    let r = app
        .req(
            reqwest::Method::POST,
            "/v1/records",
            Some(&scanner),
            Some(("application/json", b"{nope".to_vec())),
        )
        .await;
    assert_eq!((r.status, r.code().as_str()), (400, "malformed_json"));
    let r = app
        .req(
            reqwest::Method::POST,
            "/v1/records",
            Some(&scanner),
            Some((
                "text/plain",
                serde_json::to_vec(&json!({"records": [good.clone()]})).unwrap(),
            )),
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (415, "unsupported_media_type")
    );
    let big = vec![b' '; 9 * 1024 * 1024];
    let r = app
        .req(
            reqwest::Method::POST,
            "/v1/records",
            Some(&scanner),
            Some(("application/json", big)),
        )
        .await;
    assert_eq!((r.status, r.code().as_str()), (413, "payload_too_large"));
    let st = app.status(ADMIN, id).await.json();
    assert_eq!(
        st["last_sample_at"],
        serde_json::Value::Null,
        "nothing of a refused request is stored"
    );

    // Per-item codes, judged alone and in order.
    let items = json!([
        "not an object",
        {"person_id": id, "tube_id": "Z2"},
        {"person_id": id, "tube_id": "Z2", "collected_at": t(now), "site": "S09"},
        {"person_id": "123", "tube_id": "Z2", "collected_at": t(now)},
        {"person_id": id, "tube_id": "bad tube!", "collected_at": t(now)},
        {"person_id": id, "tube_id": "Z2", "collected_at": "2022-04-19T08:15:00"},
        {"person_id": id, "tube_id": "Z2", "collected_at": t(now.plus_millis(HOUR))},
        {"person_id": id, "tube_id": "Z2", "collected_at": t(now.plus_millis(-31 * 24 * HOUR))},
        good,
    ]);
    let r = app.records(&scanner, items).await;
    let j = r.json();
    let codes: Vec<&str> = j["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        [
            "invalid_field",
            "invalid_field",
            "unknown_field",
            "invalid_person_id",
            "invalid_tube_id",
            "invalid_time",
            "invalid_time",
            "invalid_time"
        ]
    );
    assert_eq!(j["accepted"], 1);

    // Pool size counts earlier records of the same batch; resends are duplicates even when full.
    let batch: Vec<_> = people
        .iter()
        .take(21)
        .map(|(p, _)| json!({"person_id": p, "tube_id": "FULL", "collected_at": t(now)}))
        .collect();
    let r = app.records(&scanner, json!(batch)).await;
    assert_eq!(r.json()["accepted"], 20);
    assert_eq!(r.json()["rejected"][0]["code"], "tube_full");
    let r = app.records(&scanner, json!([batch[0].clone()])).await;
    assert_eq!(r.json()["duplicates"], 1);

    // Results: invalid result, conflicting result.
    let (_, lab) = app.token("lab", None, None).await;
    let r = app
        .results(
            &lab,
            json!([{"tube_id": "FULL", "result": "maybe", "reported_at": t(now)},
                              {"tube_id": "FULL", "result": "negative", "reported_at": t(now)},
                              {"tube_id": "FULL", "result": "positive", "reported_at": t(now)},
                              {"tube_id": "NEW", "result": "negative", "reported_at": t(now)}]),
        )
        .await;
    let j = r.json();
    assert_eq!(j["accepted"], 2);
    assert_eq!(j["unmatched"], 1);
    assert_eq!(j["rejected"][0]["code"], "invalid_result");
    assert_eq!(j["rejected"][1]["code"], "conflicting_result");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_register_file_changes_nothing_and_reports_every_line() {
    let app = spawn_with(Opts {
        redis: false,
        ..Opts::default()
    })
    .await;
    let (csv, people) = small_city(1);
    assert_eq!(app.register(&csv).await.status, 200);
    let mut bad = String::from("person_id,name,phone,area,household\n");
    bad.push_str(&format!(
        "{},新名字,13900000000,崇文路街道/学院社区,H1\n",
        people[0].0
    ));
    bad.push_str("61080219850312001Y,甲,13900000000,崇文路街道/学院社区,H1\n");
    bad.push_str(&format!(
        "{},乙,13900000000,崇文路街道//学院社区,H1\n",
        people[1].0
    ));
    bad.push_str(&format!(
        "{},,13900000000,崇文路街道/学院社区,H1\n",
        people[2].0
    ));
    bad.push_str(&format!(
        "{},丙,13900000000,崇文路街道/学院社区\n",
        people[3].0
    ));
    bad.push_str(&format!(
        "{},丁,13900000000,崇文路街道/学院社区,H1\n",
        people[0].0
    ));
    let r = app.register(&bad).await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_register"));
    let lines: Vec<(u64, String)> = r.json()["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["line"].as_u64().unwrap(),
                l["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            (3, "invalid_person_id".to_owned()),
            (4, "invalid_area".to_owned()),
            (5, "invalid_field".to_owned()),
            (6, "wrong_column_count".to_owned()),
            (7, "duplicate_person".to_owned()),
        ]
    );
    let v = app
        .get(&format!("/v1/residents/{}", people[0].0), ADMIN)
        .await
        .json();
    assert_eq!(
        v["name"], "居民001",
        "the rejected file left the register untouched"
    );
    let r = app
        .post_csv("/v1/register", ADMIN, "person_id,name\n")
        .await;
    assert_eq!(r.json()["lines"][0]["code"], "missing_column");
    // Upsert counts.
    let mut up = String::from("person_id,name,phone,area,household\n");
    up.push_str(&format!(
        "{},新名字,13900000000,崇文路街道/学院社区/第01网格/01号楼/01层,H1\n",
        people[0].0
    ));
    up.push_str(&format!(
        "{},新人,13900000000,崇文路街道/学院社区/第01网格/01号楼/01层,H1\n",
        pid("19900101", 1)
    ));
    let r = app.register(&up).await;
    assert_eq!(
        r.json(),
        json!({"residents": 9, "inserted": 1, "updated": 1, "unchanged": 0})
    );
    // Moving out.
    assert_eq!(
        app.delete(&format!("/v1/residents/{}", people[0].0), ADMIN)
            .await
            .status,
        204
    );
    assert_eq!(
        app.get(&format!("/v1/residents/{}", people[0].0), ADMIN)
            .await
            .code(),
        "unknown_resident"
    );
    assert_eq!(
        app.delete(&format!("/v1/residents/{}", people[0].0), ADMIN)
            .await
            .code(),
        "unknown_resident"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_endpoints_answer_and_every_response_is_no_store() {
    let app = spawn_app().await;
    let r = app.req(reqwest::Method::GET, "/healthz", None, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["cache-control"], "no-store");
    let r = app.req(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(
        r.json(),
        json!({"store": "ready", "redis": "ok", "role": "leader"})
    );
    let r = app
        .req(reqwest::Method::GET, "/v1/rounds", None, None)
        .await;
    assert_eq!(r.headers["cache-control"], "no-store");
    app.status(ADMIN, &pid("19850312", 1)).await;
    let r = app.req(reqwest::Method::GET, "/metrics", None, None).await;
    assert!(
        r.text().contains("rollcall_http_requests_total"),
        "{}",
        r.text()
    );
    let r = app.req(reqwest::Method::GET, "/", None, None).await;
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
}

/// A gate lookup answered on the fast path (before routing) and the same
/// lookup through the routed handler (an escaped character in the path
/// makes the fast path pass it on) answer alike: body, headers, metrics;
/// errors still come from the handler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_lookup_answers_alike_on_the_fast_path_and_through_the_router() {
    let app = spawn_app().await;
    let (csv, people) = small_city(2);
    app.register(&csv).await;
    let (_, gate) = app.token("gate", None, None).await;
    let (_, scanner) = app.token("scanner", Some("S01"), None).await;
    let id = &people[0].0;
    let (head, last) = id.split_at(id.len() - 1);
    let escaped = format!("/v1/status/{head}%{:02X}", last.as_bytes()[0]);
    for token in [gate.as_str(), ADMIN] {
        let fast = app.status(token, id).await;
        let routed = app.get(&escaped, token).await;
        assert_eq!(fast.status, 200, "{}", fast.text());
        assert_eq!(routed.status, 200, "{}", routed.text());
        assert_eq!(fast.json(), routed.json());
        for h in [
            "content-type",
            "cache-control",
            "x-content-type-options",
            "referrer-policy",
            "x-frame-options",
        ] {
            assert_eq!(fast.headers.get(h), routed.headers.get(h), "{h}");
            assert!(fast.headers.get(h).is_some(), "{h}");
        }
    }
    // What the fast path passes on gets the contract's errors.
    assert_eq!(app.status(&scanner, id).await.code(), "forbidden");
    assert_eq!(app.status("not-a-token", id).await.code(), "unauthorized");
    assert_eq!(app.status(&gate, "123").await.code(), "invalid_person_id");
    let m = app
        .req(reqwest::Method::GET, "/metrics", None, None)
        .await
        .text();
    for want in [
        r#"rollcall_http_requests_total{route="/v1/status/{person_id}",status="200"}"#,
        r#"rollcall_http_requests_total{route="/v1/status/{person_id}",status="403"}"#,
        "rollcall_gate_lookup_seconds_count",
    ] {
        assert!(m.contains(want), "{want} not in {m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_answers_exactly_as_before() {
    let app = spawn_app().await;
    let (csv, people) = small_city(3);
    app.register(&csv).await;
    app.heads(HEADS_CSV).await;
    let now = app.now();
    let rid = app
        .create_round(
            ADMIN,
            &[A],
            now.plus_millis(-2 * HOUR),
            now.plus_millis(HOUR),
        )
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, s1) = app.token("scanner", Some("S01"), None).await;
    let (_, gate) = app.token("gate", None, None).await;
    let recs: Vec<_> = people
        .iter()
        .take(7)
        .enumerate()
        .map(|(i, (p, _))| json!({"person_id": p, "tube_id": format!("R{}", i / 4), "collected_at": t(now.plus_millis(-HOUR))}))
        .collect();
    app.records(&s1, json!(recs)).await;
    app.results(
        ADMIN,
        json!([{"tube_id": "R0", "result": "positive", "reported_at": t(now)}]),
    )
    .await;
    app.close_round(ADMIN, &rid).await;
    let ex = app
        .post(
            "/v1/exemptions",
            ADMIN,
            &json!({"person_id": people[10].0, "reason": "hospitalized", "from": t(now.plus_millis(-HOUR)), "until": t(now.plus_millis(HOUR))}),
        )
        .await;
    assert_eq!(ex.status, 201, "{}", ex.text());

    let ids: Vec<String> = people.iter().map(|(p, _)| p.clone()).collect();
    let before = views(&app, &rid, &ids, &gate).await;
    let app = app.restart().await;
    let after = views(&app, &rid, &ids, &gate).await;
    assert_eq!(before.len(), after.len());
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b, a);
    }
    // Tokens survive a restart too.
    assert_eq!(app.status(&gate, &people[0].0).await.status, 200);
}

/// Everything an official and a gate can see of one round.
async fn views(app: &TestApp, rid: &str, ids: &[String], gate: &str) -> Vec<serde_json::Value> {
    let paths = [
        format!("/v1/rounds/{rid}"),
        format!("/v1/rounds/{rid}/missing?group_by=head"),
        format!("/v1/rounds/{rid}/coverage?depth=5"),
        format!("/v1/rounds/{rid}/progress"),
    ];
    let mut out = Vec::new();
    for p in &paths {
        out.push(app.get(p, ADMIN).await.json());
    }
    for id in ids {
        out.push(app.status(gate, id).await.json());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_missing_list_agrees_in_json_csv_and_xlsx_and_unmasking_is_audited() {
    use calamine::Reader;
    let app = spawn_with(Opts {
        redis: false,
        ..Opts::default()
    })
    .await;
    let (csv, _) = small_city(3);
    app.register(&csv).await;
    app.heads(HEADS_CSV).await;
    let now = app.now();
    let rid = app
        .create_round(ADMIN, &[A], now.plus_millis(-HOUR), now.plus_millis(HOUR))
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, official) = app.token("official", None, Some(A)).await;
    let base = format!("/v1/rounds/{rid}/missing?area={A}");
    let j = app.get(&base, &official).await.json();
    let people = j["people"].as_array().unwrap().clone();
    assert_eq!(j["total"], 12);
    let row = |p: &serde_json::Value| -> Vec<String> {
        let h = &p["head"];
        let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
        vec![
            s(&p["person_id"]),
            s(&p["name"]),
            s(&p["phone"]),
            s(&p["area"]),
            s(&p["household"]),
            s(&h["title"]),
            s(&h["name"]),
            s(&h["phone"]),
        ]
    };
    let want: Vec<Vec<String>> = people.iter().map(row).collect();

    let r = app.get(&format!("{base}&format=csv"), &official).await;
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let mut rd = csv::Reader::from_reader(r.body.as_slice());
    assert_eq!(
        rd.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "person_id",
            "name",
            "phone",
            "area",
            "household",
            "head_title",
            "head_name",
            "head_phone"
        ]
    );
    let got: Vec<Vec<String>> = rd
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect();
    assert_eq!(got, want);

    let r = app.get(&format!("{base}&format=xlsx"), &official).await;
    assert_eq!(&r.body[..2], b"PK");
    let mut wb: calamine::Xlsx<_> =
        calamine::open_workbook_from_rs(std::io::Cursor::new(r.body.clone())).unwrap();
    let names = wb.sheet_names();
    let mut got = Vec::new();
    for n in &names[1..] {
        let range = wb.worksheet_range(n).unwrap();
        got.extend(
            range
                .rows()
                .skip(1)
                .map(|r| r.iter().map(ToString::to_string).collect::<Vec<_>>()),
        );
    }
    assert_eq!(got, want, "the workbook's people are the JSON list");
    assert!(!String::from_utf8_lossy(&r.body).contains(&pid("19850312", 1)));

    // Masked everywhere; whole for an admin who asks, and that is audited.
    assert!(want.iter().all(|r| r[0].contains("********")));
    let j = app.get(&format!("{base}&unmask=true"), ADMIN).await.json();
    assert!(!j["people"][0]["person_id"].as_str().unwrap().contains('*'));
    let entries = app.get("/v1/audit", ADMIN).await.json()["entries"].clone();
    let unmask = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "unmask")
        .expect("an unmask entry");
    assert_eq!(unmask["rows"], 12);
    assert_eq!(unmask["round_id"], rid.as_str());
    assert_eq!(unmask["role"], "admin");

    // group_by=head: the floor head's people, then the community head's.
    let j = app
        .get(&format!("{base}&group_by=head"), &official)
        .await
        .json();
    let groups = j["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0]["head"]["name"], "李书记");
    assert_eq!(groups[1]["head"]["name"], "王芳");
    let n: usize = groups
        .iter()
        .map(|g| g["people"].as_array().unwrap().len())
        .sum();
    assert_eq!(n, 12);
}

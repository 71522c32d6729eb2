//! Issue 14's contract gaps against the real server: `405` with `Allow`,
//! `HEAD` as `GET`, the error shape for unknown paths (the API browser's
//! included), `null` refused in optional fields, the security headers on
//! every response, and a forged Redis value never served to a gate.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

fn t(ts: rollcall::domain::Timestamp) -> String {
    ts.to_rfc3339()
}

const HOUR: i64 = 3_600_000;

/// A request: method, path, token, body (content type and bytes).
type Case<'a> = (Method, &'a str, Option<&'a str>, Option<(&'a str, Vec<u8>)>);

async fn no_redis() -> TestApp {
    spawn_with(Opts {
        redis: false,
        ..Opts::default()
    })
    .await
}

fn header<'a>(r: &'a Resp, name: &str) -> &'a str {
    r.headers
        .get(name)
        .map_or("", |v| v.to_str().unwrap_or_default())
}

/// `{"error": {"code": code, "message": "…"}}` and nothing else.
fn assert_error_shape(r: &Resp, status: u16, code: &str, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.text());
    let j = r.json();
    assert_eq!(j["error"]["code"], code, "{what}: {j}");
    assert!(j["error"]["message"].is_string(), "{what}: {j}");
    assert_eq!(j.as_object().unwrap().len(), 1, "{what}: {j}");
    assert!(
        header(r, "content-type").starts_with("application/json"),
        "{what}: {:?}",
        r.headers
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_path_with_another_method_is_405_with_allow() {
    let app = no_redis().await;
    let r = app
        .req(
            Method::PUT,
            "/v1/records",
            Some(ADMIN),
            Some(("application/json", b"{\"records\":[]}".to_vec())),
        )
        .await;
    assert_error_shape(&r, 405, "method_not_allowed", "PUT /v1/records");
    assert_eq!(header(&r, "allow"), "POST");

    let r = app
        .req(Method::DELETE, "/v1/rounds", Some(ADMIN), None)
        .await;
    assert_error_shape(&r, 405, "method_not_allowed", "DELETE /v1/rounds");
    assert_eq!(header(&r, "allow"), "POST, GET, HEAD");

    // Without a token too: the method is judged before the token.
    let r = app.req(Method::PATCH, "/v1/rounds/7", None, None).await;
    assert_error_shape(&r, 405, "method_not_allowed", "PATCH /v1/rounds/7");
    assert_eq!(header(&r, "allow"), "GET, HEAD");

    let r = app.req(Method::POST, "/docs/index.html", None, None).await;
    assert_error_shape(&r, 405, "method_not_allowed", "POST /docs/index.html");
    assert_eq!(header(&r, "allow"), "GET, HEAD");

    // HEAD where only POST is served.
    let r = app
        .req(Method::HEAD, "/v1/records", Some(ADMIN), None)
        .await;
    assert_eq!(r.status, 405);
    assert_eq!(header(&r, "allow"), "POST");
    assert!(r.body.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_answers_as_get_without_a_body() {
    let app = no_redis().await;
    for (path, token) in [
        ("/healthz", None),
        ("/readyz", None),
        ("/", None),
        ("/openapi.json", None),
        ("/docs/", None),
        ("/v1/rounds", Some(ADMIN)),
        ("/v1/rounds", None),
        ("/v1/rounds/99", Some(ADMIN)),
        ("/v1/no-such-thing", None),
    ] {
        let get = app.req(Method::GET, path, token, None).await;
        let head = app.req(Method::HEAD, path, token, None).await;
        assert_eq!(head.status, get.status, "HEAD {path}");
        assert!(head.body.is_empty(), "HEAD {path} has a body");
        assert_eq!(
            header(&head, "content-type"),
            header(&get, "content-type"),
            "HEAD {path}"
        );
    }
    let r = app.req(Method::HEAD, "/healthz", None, None).await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_are_404_not_found_in_the_error_shape() {
    let app = no_redis().await;
    for path in [
        "/v1/no-such-thing",
        "/v1/rounds/1/nothing",
        "/v1/rounds//close",
        "/docs/nope",
        "/docs/nope.js",
        "/docs/a/b",
        "/nothing",
    ] {
        let r = app.req(Method::GET, path, Some(ADMIN), None).await;
        assert_error_shape(&r, 404, "not_found", path);
    }
    // The UI itself is still there.
    let r = app.req(Method::GET, "/docs/", None, None).await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("swagger-ui"));
    let r = app
        .req(Method::GET, "/docs/swagger-ui-bundle.js", None, None)
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body.len() > 100_000);
}

/// `null` in an optional field is `400 invalid_field`, and the request
/// changes nothing (no audit entry, no token, no exemption, no clear).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_in_an_optional_field_is_invalid_field_and_changes_nothing() {
    let app = no_redis().await;
    let (csv, people) = small_city(2);
    assert_eq!(app.register(&csv).await.status, 200);
    let p = &people[0].0;
    let now = app.now();
    let audit_len = async || {
        app.get("/v1/audit", ADMIN).await.json()["entries"]
            .as_array()
            .unwrap()
            .len()
    };
    let before = audit_len().await;

    let r = app
        .post(
            &format!("/v1/residents/{p}/clear"),
            ADMIN,
            &json!({"note": null}),
        )
        .await;
    assert_error_shape(&r, 400, "invalid_field", "clear with note null");

    for body in [
        json!({"role": "gate", "name": "g", "area": null}),
        json!({"role": "gate", "name": "g", "site": null}),
        json!({"role": "official", "name": "o", "area": null}),
        json!({"role": "scanner", "name": "s", "site": null}),
        json!({"role": null, "name": "g"}),
    ] {
        let r = app.post("/v1/tokens", ADMIN, &body).await;
        assert_error_shape(&r, 400, "invalid_field", &body.to_string());
    }

    let exemption = json!({
        "person_id": p, "reason": "bedridden",
        "from": t(now), "until": t(now.plus_millis(48 * HOUR)), "note": null
    });
    let r = app.post("/v1/exemptions", ADMIN, &exemption).await;
    assert_error_shape(&r, 400, "invalid_field", "exemption with note null");
    let mut without_until = exemption.clone();
    without_until["note"] = json!("n");
    without_until["until"] = Value::Null;
    let r = app.post("/v1/exemptions", ADMIN, &without_until).await;
    assert_error_shape(&r, 400, "invalid_field", "exemption with until null");

    let r = app
        .post(
            "/v1/rounds",
            ADMIN,
            &json!({"name": null, "scope": ["崇文路街道"], "opens_at": t(now), "deadline": t(now.plus_millis(HOUR))}),
        )
        .await;
    assert_error_shape(&r, 400, "invalid_field", "round with name null");

    // In a batch item, null is a wrong type like any other.
    let r = app
        .records(
            ADMIN,
            json!([{"person_id": p, "tube_id": "N1", "collected_at": null, "site": "S01"}]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["rejected"][0]["code"], "invalid_field");

    assert_eq!(audit_len().await, before, "nothing refused was audited");
    let rounds = app.get("/v1/rounds", ADMIN).await.json();
    assert_eq!(rounds["rounds"], json!([]), "{rounds}");
    // The same requests without the nulls are accepted.
    let r = app
        .post(&format!("/v1/residents/{p}/clear"), ADMIN, &json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = app
        .post("/v1/tokens", ADMIN, &json!({"role": "gate", "name": "g"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let mut ok = exemption.clone();
    ok.as_object_mut().unwrap().remove("note");
    let r = app.post("/v1/exemptions", ADMIN, &ok).await;
    assert_eq!(r.status, 201, "{}", r.text());
}

/// Every response carries the security headers and `no-store`, errors and
/// unknown paths included; HTML pages carry a CSP that forbids framing and
/// other origins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_the_security_headers() {
    let app = no_redis().await;
    let cases: Vec<Case> = vec![
        (Method::GET, "/healthz", None, None),
        (Method::GET, "/readyz", None, None),
        (Method::GET, "/metrics", None, None),
        (Method::GET, "/openapi.json", None, None),
        (Method::GET, "/", None, None),
        (Method::GET, "/docs", None, None),
        (Method::GET, "/docs/", None, None),
        (Method::GET, "/docs/swagger-ui.css", None, None),
        (Method::GET, "/docs/nope", None, None),
        (Method::GET, "/v1/rounds", Some(ADMIN), None),
        (Method::GET, "/v1/rounds", None, None),
        (Method::GET, "/v1/rounds/42", Some(ADMIN), None),
        (Method::GET, "/v1/no-such-thing", None, None),
        (Method::DELETE, "/v1/rounds", Some(ADMIN), None),
        (Method::HEAD, "/healthz", None, None),
        (
            Method::POST,
            "/v1/rounds",
            Some(ADMIN),
            Some(("application/json", b"{not json".to_vec())),
        ),
    ];
    for (m, path, token, body) in cases {
        let what = format!("{m} {path}");
        let r = app.req(m, path, token, body).await;
        assert_eq!(header(&r, "x-content-type-options"), "nosniff", "{what}");
        assert_eq!(header(&r, "referrer-policy"), "no-referrer", "{what}");
        assert_eq!(header(&r, "x-frame-options"), "DENY", "{what}");
        assert_eq!(header(&r, "cache-control"), "no-store", "{what}");
        if header(&r, "content-type").starts_with("text/html") {
            let csp = header(&r, "content-security-policy");
            assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
            assert!(csp.contains("default-src 'none'"), "{what}: {csp}");
            assert!(!csp.contains("http"), "{what} allows another origin: {csp}");
            assert!(!csp.contains('*'), "{what}: {csp}");
        }
    }
    let r = app.req(Method::GET, "/", None, None).await;
    let csp = header(&r, "content-security-policy");
    assert!(csp.contains("script-src 'sha256-"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    let r = app.req(Method::GET, "/docs/", None, None).await;
    let csp = header(&r, "content-security-policy");
    assert!(csp.contains("script-src 'self'"), "{csp}");
}

/// The value `key` holds in Redis, waiting up to 10 s for `want(value)`.
async fn redis_value(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
    want: impl Fn(&[u8]) -> bool,
) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v: Option<Vec<u8>> = redis::cmd("GET").arg(key).query_async(conn).await.unwrap();
        if let Some(v) = v
            && want(&v)
        {
            return v;
        }
        assert!(Instant::now() < deadline, "{key} never held the value");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writes a value to Redis directly, as anyone who can reach it could.
async fn set_raw(conn: &mut redis::aio::MultiplexedConnection, key: &str, value: &[u8]) {
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async(conn)
        .await
        .unwrap();
}

fn colour_of(raw: &[u8]) -> String {
    let json = rollcall::status_cache::cached_json(raw).expect("a cache value");
    serde_json::from_slice::<Value>(json).unwrap()["color"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn forged_total(app: &TestApp) -> u64 {
    let text = app.get("/metrics", ADMIN).await.text();
    text.lines()
        .find_map(|l| l.strip_prefix("rollcall_cache_forged_total "))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// A red code turned green by writing to Redis directly (keeping the
/// header, so version and epoch look right) is caught by its MAC: the gate
/// gets the engine's red, the metric counts it, and the forged value is
/// replaced. A genuine value copied from another person's key is caught
/// the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_redis_value_is_answered_from_the_engine_and_counted() {
    let app = spawn_app().await;
    let (csv, people) = small_city(2);
    assert_eq!(app.register(&csv).await.status, 200);
    let (_, gate) = app.token("gate", None, None).await;
    let now = app.now();
    let red = &people[0].0;
    let green = &people[1].0;
    let r = app
        .records(
            ADMIN,
            json!([
                {"person_id": red, "tube_id": "F1", "collected_at": t(now.plus_millis(-HOUR)), "site": "S01"},
                {"person_id": green, "tube_id": "F2", "collected_at": t(now.plus_millis(-HOUR)), "site": "S01"}
            ]),
        )
        .await;
    assert_eq!(r.json()["accepted"], 2, "{}", r.text());
    let r = app
        .results(
            ADMIN,
            json!([{"tube_id": "F1", "result": "positive", "reported_at": t(now)},
                   {"tube_id": "F2", "result": "negative", "reported_at": t(now)}]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(app.status(&gate, red).await.json()["color"], "red");
    assert_eq!(app.status(&gate, green).await.json()["color"], "green");

    let state = &app.running.as_ref().unwrap().state;
    let key: [u8; 32] = hex::decode(state.store.meta_get("cache_key").unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let red_key = rollcall::status_cache::cache_key(&key, red.parse().unwrap());
    let green_key = rollcall::status_cache::cache_key(&key, green.parse().unwrap());
    let mut conn = redis::Client::open(app.redis.as_ref().unwrap().url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let genuine_red = redis_value(&mut conn, &red_key, |v| colour_of(v) == "red").await;
    let genuine_green = redis_value(&mut conn, &green_key, |v| colour_of(v) == "green").await;

    // 1. Red turned green in place: header (version, expiry, MAC) kept,
    //    JSON replaced by a green status.
    let json_at = genuine_red.len()
        - rollcall::status_cache::cached_json(&genuine_red)
            .unwrap()
            .len();
    let mut forged = genuine_red[..json_at].to_vec();
    forged.extend_from_slice(
        br#"{"color":"green","reasons":[],"valid_until":null,"last_sample_at":null,"last_negative_at":null}"#,
    );
    let before = forged_total(&app).await;
    set_raw(&mut conn, &red_key, &forged).await;
    let r = app.status(&gate, red).await;
    assert_eq!(
        r.json()["color"],
        "red",
        "the engine's answer: {}",
        r.text()
    );
    assert_eq!(forged_total(&app).await, before + 1);
    // Replaced by the genuine status, which is then served from Redis.
    let healed = redis_value(&mut conn, &red_key, |v| v != forged.as_slice()).await;
    assert_eq!(colour_of(&healed), "red");
    assert_eq!(app.status(&gate, red).await.json()["color"], "red");
    assert_eq!(forged_total(&app).await, before + 1, "no longer forged");

    // 2. A genuine green value copied under the red person's key.
    set_raw(&mut conn, &red_key, &genuine_green).await;
    assert_eq!(app.status(&gate, red).await.json()["color"], "red");
    assert_eq!(forged_total(&app).await, before + 2);

    // 3. A forged value with the highest version (the versioned write-back
    //    would keep it) is replaced all the same.
    let mut top = forged.clone();
    top[..16].copy_from_slice(b"ffffffffffffffff");
    set_raw(&mut conn, &red_key, &top).await;
    assert_eq!(app.status(&gate, red).await.json()["color"], "red");
    let healed = redis_value(&mut conn, &red_key, |v| v != top.as_slice()).await;
    assert_eq!(colour_of(&healed), "red");
    assert_eq!(forged_total(&app).await, before + 3);

    // 4. Bytes not shaped like a value at all: a plain miss, not counted,
    //    replaced all the same.
    set_raw(&mut conn, &red_key, b"ffffffffffffffff garbage").await;
    assert_eq!(app.status(&gate, red).await.json()["color"], "red");
    let healed = redis_value(&mut conn, &red_key, |v| v.starts_with(b"0")).await;
    assert_eq!(colour_of(&healed), "red");
    assert_eq!(forged_total(&app).await, before + 3);

    // The genuine green person is untouched throughout.
    assert_eq!(app.status(&gate, green).await.json()["color"], "green");
}

/// A binding the role does not keep is still checked, never silently
/// dropped when it is wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tokens_site_and_area_are_checked_whatever_the_role() {
    let app = no_redis().await;
    let long = "S".repeat(65);
    for body in [
        json!({"role": "lab", "name": "l", "site": long}),
        json!({"role": "gate", "name": "g", "site": ""}),
        json!({"role": "lab", "name": "l", "area": "a//b"}),
    ] {
        let r = app.post("/v1/tokens", ADMIN, &body).await;
        assert_error_shape(&r, 400, "invalid_field", &body.to_string());
    }
    let r = app
        .post(
            "/v1/tokens",
            ADMIN,
            &json!({"role": "lab", "name": "l", "site": "S01"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
}

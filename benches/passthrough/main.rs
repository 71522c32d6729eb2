//! The practical ceiling for gate lookups (issue 18): an actix-web server
//! whose one route does one Redis `GET` of the path's key and answers the
//! value's bytes — no token, no metrics, no MAC, no routing table. Run by
//! `benches/compare/run.sh` beside rollcall, with the same `wrk` script, on
//! the same Redis (its keys are the IDs themselves, filled by the script).
//!
//! `cargo run --release --example passthrough -- LISTEN REDIS_URL [WORKERS]`
use std::cell::RefCell;

use actix_web::{App, HttpResponse, HttpServer, get, web};
use redis::aio::MultiplexedConnection;

thread_local! {
    // One connection per worker thread, as rollcall's gate lookups use.
    static CONN: RefCell<Option<MultiplexedConnection>> = const { RefCell::new(None) };
}

#[get("/v1/status/{id}")]
async fn status(client: web::Data<redis::Client>, id: web::Path<String>) -> HttpResponse {
    let mut conn = match CONN.with_borrow(Clone::clone) {
        Some(c) => c,
        None => {
            let c = client
                .get_multiplexed_async_connection()
                .await
                .expect("Redis");
            CONN.set(Some(c.clone()));
            c
        }
    };
    let found: Option<Vec<u8>> = redis::cmd("GET")
        .arg(id.as_str())
        .query_async(&mut conn)
        .await
        .expect("GET");
    match found {
        Some(v) => HttpResponse::Ok().content_type("application/json").body(v),
        None => HttpResponse::NotFound().finish(),
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let client = web::Data::new(redis::Client::open(args[2].as_str()).expect("a Redis URL"));
    let workers = args
        .get(3)
        .map_or(2, |w| w.parse().expect("workers: a number"));
    HttpServer::new(move || App::new().app_data(client.clone()).service(status))
        .workers(workers)
        .bind(&args[1])?
        .run()
        .await
}

//! Route files mirror the URL tree: `rounds.rs` serves `/v1/rounds…`, and so on.

pub mod audit;
pub mod exemptions;
pub mod ops;
pub mod records;
pub mod register;
pub mod residents;
pub mod results;
pub mod rounds;
pub mod status;
pub mod tokens;

use actix_web::{HttpRequest, HttpResponse, web};

use super::error::{ApiError, Code};

/// Registers every route of the contract.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(ops::healthz)
        .service(ops::readyz)
        .service(ops::metrics)
        .service(ops::openapi)
        .service(ops::dashboard)
        .service(tokens::create)
        .service(tokens::revoke)
        .service(register::register)
        .service(register::heads)
        .service(residents::get)
        .service(residents::delete)
        .service(residents::clear)
        .service(records::post)
        .service(results::post)
        .service(rounds::create)
        .service(rounds::list)
        .service(rounds::get)
        .service(rounds::close)
        .service(rounds::missing::missing)
        .service(rounds::coverage)
        .service(rounds::progress)
        .service(exemptions::create)
        .service(exemptions::delete)
        .service(status::get)
        .service(audit::list)
        .default_service(web::to(not_found));
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        Code::NotFound,
        format!("no route for {} {}", req.method(), req.path()),
    ))
}

//! Bearer tokens: stored only as a keyed hash (HMAC-SHA256 with a key kept
//! in the store), looked up by that hash and compared in constant time;
//! roles and area scopes as the contract's table.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use hmac::{Hmac, Mac};
use parking_lot::RwLock;
use rustc_hash::FxHashMap;
use sha2::Sha256;

use super::AppState;
use super::error::{ApiError, Code, Denial};
use crate::domain::{AreaPath, Role};

/// Who is calling: the token's role and binding.
#[derive(Clone, Debug)]
pub struct Principal {
    pub token_id: String,
    pub name: String,
    pub role: Role,
    pub site: Option<Arc<str>>,
    pub area: Option<AreaPath>,
}

impl Principal {
    /// Refuses with `403 forbidden` unless the role is one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::new(
                Code::Forbidden,
                format!("a {} token may not do this", self.role.as_str()),
            ))
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Refuses with `403 out_of_scope` when an official's area does not hold `area`.
    /// The area named is the caller's own input, never a resident's.
    pub fn require_area(&self, area: &AreaPath) -> Result<(), ApiError> {
        if self.holds(area) {
            return Ok(());
        }
        Err(ApiError::new(
            Code::OutOfScope,
            format!("{area} is outside this token's area"),
        )
        .denied(Denial {
            area: Some(area.to_string()),
            ..Denial::default()
        }))
    }

    /// Whether an official's area holds `area` (an admin's holds every one).
    pub fn holds(&self, area: &AreaPath) -> bool {
        match (&self.role, &self.area) {
            (Role::Admin, _) => true,
            (Role::Official, Some(mine)) => mine.is_prefix_of(area),
            _ => false,
        }
    }
}

/// The live tokens, by keyed hash.
pub struct Tokens {
    /// This set's own number, so that a thread's remembered hash (below) is
    /// only ever reused by the set, and so the key, that computed it.
    id: u64,
    /// HMAC-SHA256 keyed once with the tokens' key: each hash clones it
    /// rather than deriving the keyed state again (two of its five SHA-256
    /// blocks, on every request).
    keyed: Hmac<Sha256>,
    // A read-mostly map: every request reads it, token changes (rare) write.
    by_hash: RwLock<FxHashMap<[u8; 32], Principal>>,
}

impl Tokens {
    pub fn new(key: [u8; 32]) -> Tokens {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Tokens {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            keyed: Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length"),
            by_hash: RwLock::new(FxHashMap::default()),
        }
    }

    /// The keyed hash a token is stored under.
    ///
    /// Each thread remembers the last token it hashed: a gate sends the same
    /// token with every lookup, and its hash (three SHA-256 blocks) was 1.8%
    /// of a lookup's CPU. The presented token is compared with the remembered
    /// one in constant time, so the only thing timing can tell is whether it
    /// equals the last token used on that thread, which a caller can only
    /// know by holding it. What is remembered is the hash, a function of the
    /// token and the key alone, never whether the token is live: revoking
    /// one takes effect on the next request as before.
    pub fn hash(&self, token: &str) -> [u8; 32] {
        let token = token.as_bytes();
        if token.len() > REMEMBERED_MAX {
            return self.compute(token);
        }
        LAST_TOKEN.with_borrow_mut(|last| {
            if let Some(r) = last
                && r.set == self.id
                && crate::ct::eq(&r.token[..r.len], token)
            {
                return r.hash;
            }
            let hash = self.compute(token);
            let mut kept = [0u8; REMEMBERED_MAX];
            kept[..token.len()].copy_from_slice(token);
            *last = Some(Remembered {
                set: self.id,
                token: kept,
                len: token.len(),
                hash,
            });
            hash
        })
    }

    fn compute(&self, token: &[u8]) -> [u8; 32] {
        let mut mac = self.keyed.clone();
        mac.update(token);
        mac.finalize().into_bytes().into()
    }

    pub fn insert(&self, hash: [u8; 32], p: Principal) {
        self.by_hash.write().insert(hash, p);
    }

    pub fn remove_id(&self, id: &str) {
        self.by_hash.write().retain(|_, p| p.token_id != id);
    }

    /// Whether a presented token is live and has one of `roles`, without
    /// copying its principal (the gate lookups' fast path).
    pub fn permits(&self, token: &str, roles: &[Role]) -> bool {
        let h = self.hash(token);
        let map = self.by_hash.read();
        map.get_key_value(&h)
            .is_some_and(|(k, p)| crate::ct::eq(&k[..], &h) && roles.contains(&p.role))
    }

    /// The principal of a presented token, if it is live.
    pub fn lookup(&self, token: &str) -> Option<Principal> {
        let h = self.hash(token);
        let map = self.by_hash.read();
        // The map finds the candidate by hash; the final comparison is
        // constant-time so no timing reveals how much of a hash matched.
        map.get_key_value(&h)
            .filter(|(k, _)| crate::ct::eq(&k[..], &h))
            .map(|(_, p)| p.clone())
    }
}

/// The longest token a thread remembers the hash of: ours are 64 characters;
/// a longer one (not a token of ours) is hashed every time.
const REMEMBERED_MAX: usize = 96;

/// A token and its hash, as one set of tokens computed it.
struct Remembered {
    set: u64,
    token: [u8; REMEMBERED_MAX],
    len: usize,
    hash: [u8; 32],
}

thread_local! {
    static LAST_TOKEN: RefCell<Option<Remembered>> = const { RefCell::new(None) };
}

/// A fresh random token: 32 random bytes, hex.
pub fn new_token() -> String {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Principal, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(principal(req))
    }
}

/// The caller, kept in the request's extensions for the middleware that
/// audits denials.
fn principal(req: &HttpRequest) -> Result<Principal, ApiError> {
    let p = lookup(req)?;
    req.extensions_mut().insert(p.clone());
    Ok(p)
}

fn lookup(req: &HttpRequest) -> Result<Principal, ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::internal(&"application state missing"))?;
    let token = bearer(req.headers())
        .ok_or_else(|| ApiError::new(Code::Unauthorized, "send Authorization: Bearer <token>"))?;
    state
        .tokens
        .lookup(token)
        .ok_or_else(|| ApiError::new(Code::Unauthorized, "unknown or revoked token"))
}

/// The token of an `Authorization: Bearer <token>` header, if one is sent.
pub fn bearer(headers: &actix_web::http::header::HeaderMap) -> Option<&str> {
    headers
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uncached(key: [u8; 32], token: &str) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        mac.update(token.as_bytes());
        mac.finalize().into_bytes().into()
    }

    #[test]
    fn a_remembered_hash_is_the_hash() {
        let t = Tokens::new([7; 32]);
        let (a, b) = (new_token(), new_token());
        // Alternating, repeating, and tokens that differ only in their last
        // character or their length: each hash is the token's own.
        let last = if a.ends_with('0') { '1' } else { '0' };
        let near = format!("{}{last}", &a[..a.len() - 1]);
        let shorter = &a[..a.len() - 1];
        let long = "x".repeat(REMEMBERED_MAX + 1);
        for token in [&a, &a, &b, &a, &near, &a, shorter, &a, &long, &long, "", &a] {
            assert_eq!(t.hash(token), uncached([7; 32], token), "{token}");
        }
    }

    #[test]
    fn a_hash_is_never_reused_by_another_set_of_tokens() {
        // Two servers in one process (as in the tests), on one thread, with
        // different keys: each gets its own key's hash of the same token.
        let (one, two) = (Tokens::new([1; 32]), Tokens::new([2; 32]));
        let token = new_token();
        for _ in 0..2 {
            assert_eq!(one.hash(&token), uncached([1; 32], &token));
            assert_eq!(two.hash(&token), uncached([2; 32], &token));
        }
    }

    #[test]
    fn a_revoked_token_is_refused_though_its_hash_is_remembered() {
        let t = Tokens::new([3; 32]);
        let token = new_token();
        let p = Principal {
            token_id: "tok-1".into(),
            name: "gate".into(),
            role: Role::Gate,
            site: None,
            area: None,
        };
        t.insert(t.hash(&token), p);
        assert!(t.permits(&token, &[Role::Gate]));
        assert!(!t.permits(&token, &[Role::Admin]));
        t.remove_id("tok-1");
        assert!(!t.permits(&token, &[Role::Gate]));
        assert!(t.lookup(&token).is_none());
    }
}

//! The side tables: rows that are not engine events and are not replayed
//! into the engine — API tokens, the audit log, and a small key/value `meta`.
//! Written by the same writer thread, in the same group commits.
//!
//! Tokens are stored as a 32-byte keyed hash computed by the caller (the HTTP
//! layer holds the key), never as the token itself.

use rusqlite::{Connection, params};
use serde::Serialize;

use super::StoreError;
use crate::domain::{AreaPath, AuditAction, Role, Timestamp};

/// A token to create. `site` is the scanner's binding, `area` the official's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewToken {
    /// Keyed hash (e.g. HMAC-SHA256) of the token's text.
    pub hash: [u8; 32],
    pub role: Role,
    pub name: String,
    pub site: Option<String>,
    pub area: Option<AreaPath>,
    /// The bootstrap admin (`ROLLCALL_ADMIN_TOKEN`, or the one generated
    /// when it is unset): a new value at start-up replaces it.
    pub bootstrap: bool,
}

/// A stored token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRow {
    /// Assigned by the store: `"1"`, `"2"`, … in creation order.
    pub id: String,
    pub hash: [u8; 32],
    pub role: Role,
    pub name: String,
    pub site: Option<String>,
    pub area: Option<AreaPath>,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    pub bootstrap: bool,
}

impl TokenRow {
    pub fn revoked(&self) -> bool {
        self.revoked_at.is_some()
    }

    /// How audit entries name it: id, role and binding (`token 7 scanner S01`).
    pub fn describe(&self) -> String {
        describe_token(
            &self.id,
            self.role,
            self.site.as_deref(),
            self.area.as_ref(),
        )
    }
}

/// `token 7 scanner S01`, `token 8 official 崇文路街道/学院社区`, `token 1 admin`.
pub fn describe_token(id: &str, role: Role, site: Option<&str>, area: Option<&AreaPath>) -> String {
    let mut s = format!("token {id} {}", role.as_str());
    if let Some(b) = site.or(area.map(AreaPath::as_str)) {
        s.push(' ');
        s.push_str(b);
    }
    s
}

/// Every token, in creation order, and the next id to assign.
pub fn load(conn: &Connection) -> Result<(Vec<TokenRow>, u64), StoreError> {
    let mut st = conn.prepare(
        "SELECT id, token_hash, role, name, site, area, created_at, revoked_at, bootstrap
         FROM tokens",
    )?;
    let mut rows = st.query([])?;
    let mut out = Vec::new();
    let mut next = 1u64;
    while let Some(r) = rows.next()? {
        let id: String = r.get(0)?;
        let bad = |what: &str| StoreError::Corrupt(format!("token {id:?}: {what}"));
        let hash: Vec<u8> = r.get(1)?;
        let hash: [u8; 32] = hash.try_into().map_err(|_| bad("hash is not 32 bytes"))?;
        let role: String = r.get(2)?;
        let role = role.parse::<Role>().map_err(|e| bad(&e.to_string()))?;
        let area: Option<String> = r.get(5)?;
        let area = area
            .map(|a| AreaPath::parse(&a))
            .transpose()
            .map_err(|e| bad(&e.to_string()))?;
        if let Ok(n) = id.parse::<u64>() {
            next = next.max(n + 1);
        }
        out.push(TokenRow {
            hash,
            role,
            name: r.get(3)?,
            site: r.get(4)?,
            area,
            created_at: Timestamp::from_millis(r.get(6)?),
            revoked_at: r.get::<_, Option<i64>>(7)?.map(Timestamp::from_millis),
            bootstrap: r.get::<_, i64>(8)? != 0,
            id,
        });
    }
    out.sort_by_key(|t| (t.id.len(), t.id.clone()));
    Ok((out, next))
}

pub fn insert(conn: &Connection, t: &TokenRow) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO tokens (id, token_hash, role, name, site, area, created_at, bootstrap)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        t.id,
        &t.hash[..],
        t.role.as_str(),
        t.name,
        t.site,
        t.area.as_ref().map(AreaPath::as_str),
        t.created_at.as_millis(),
        i64::from(t.bootstrap)
    ])?;
    Ok(())
}

/// Marks a token revoked (keeping the first revocation time).
pub fn revoke(conn: &Connection, id: &str, at: Timestamp) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE tokens SET revoked_at = coalesce(revoked_at, ?2) WHERE id = ?1")?
        .execute(params![id, at.as_millis()])?;
    Ok(())
}

/// Every `meta` pair.
pub fn meta_load(conn: &Connection) -> rusqlite::Result<Vec<(String, String)>> {
    let mut st = conn.prepare("SELECT key, value FROM meta")?;
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()
}

pub fn meta_put(conn: &Connection, key: &str, value: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![key, value])?;
    Ok(())
}

/// One audit log entry (`GET /v1/audit`). Serialises with the contract's
/// field names; `at` as RFC 3339 in `+08:00`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub at: Timestamp,
    pub token_name: String,
    pub role: Role,
    pub action: AuditAction,
    pub area: Option<String>,
    pub round_id: Option<String>,
    pub rows: Option<u64>,
    /// What the entry was about when it is one thing: a token (`token 7
    /// scanner S01`), a resident's masked ID, an exemption's id.
    pub target: Option<String>,
}

pub fn audit_insert(conn: &Connection, e: &AuditEntry) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO audit (at, token_name, role, action, area, round_id, rows, target)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        e.at.as_millis(),
        e.token_name,
        e.role.as_str(),
        e.action.as_str(),
        e.area,
        e.round_id,
        e.rows.map(|n| n as i64),
        e.target
    ])?;
    Ok(())
}

/// Entries at or after `since` (all without it), oldest first.
pub fn audit_since(
    conn: &Connection,
    since: Option<Timestamp>,
) -> Result<Vec<AuditEntry>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT at, token_name, role, action, area, round_id, rows, target FROM audit
         WHERE at >= ?1 ORDER BY at, id",
    )?;
    let mut rows = st.query([since.map_or(i64::MIN, Timestamp::as_millis)])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let role: String = r.get(2)?;
        let role = role
            .parse::<Role>()
            .map_err(|e| StoreError::Corrupt(format!("audit entry: {e}")))?;
        out.push(AuditEntry {
            at: Timestamp::from_millis(r.get(0)?),
            token_name: r.get(1)?,
            role,
            action: r.get::<_, String>(3)?.parse().map_err(
                |e: crate::domain::UnknownVariant| {
                    rusqlite::Error::FromSqlConversionFailure(
                        3,
                        rusqlite::types::Type::Text,
                        Box::new(e),
                    )
                },
            )?,
            area: r.get(4)?,
            round_id: r.get(5)?,
            rows: r.get::<_, Option<i64>>(6)?.map(|n| n.max(0) as u64),
            target: r.get(7)?,
        });
    }
    Ok(out)
}

//! The bootstrap admin token, at start-up (`docs/api.md`, Roles): the token
//! `ROLLCALL_ADMIN_TOKEN` gives is the bootstrap admin; a new value replaces
//! it (the old one is revoked, both steps audited); a value that was revoked
//! never works again and the server refuses to start; with no value and no
//! live admin in the store, one is generated and returned to be printed once.

use anyhow::Context;

use super::auth::{Tokens, new_token};
use crate::domain::{AuditAction, Role, Timestamp};
use crate::store::{AuditEntry, NewToken, Store, TokenRow};

/// Who the start-up's audit entries name.
const WHO: &str = "rollcall serve (start-up)";

/// Applies the bootstrap rules to the store. Returns the token generated at
/// this start, if one was (to be printed once). Fails, with a message an
/// operator can act on, when `given` is a revoked token or another token's
/// value.
pub(super) async fn admin_token(
    store: &Store,
    tokens: &Tokens,
    given: Option<&str>,
    now: Timestamp,
) -> anyhow::Result<Option<String>> {
    let rows = store.tokens();
    let live_bootstrap = |except: Option<&str>| -> Vec<TokenRow> {
        rows.iter()
            .filter(|t| t.bootstrap && !t.revoked() && Some(t.id.as_str()) != except)
            .cloned()
            .collect()
    };
    let Some(given) = given else {
        if rows.iter().any(|t| t.role == Role::Admin && !t.revoked()) {
            return Ok(None);
        }
        let token = new_token();
        create(store, tokens.hash(&token), now).await?;
        return Ok(Some(token));
    };
    let hash = tokens.hash(given);
    match rows.iter().find(|t| t.hash == hash) {
        Some(t) if t.revoked() => anyhow::bail!(
            "ROLLCALL_ADMIN_TOKEN holds {} (\"{}\"), which was revoked at {}; a revoked \
             token never works again: set ROLLCALL_ADMIN_TOKEN to a new value (32+ characters) \
             to start with a new bootstrap admin",
            t.describe(),
            t.name,
            t.revoked_at.map(Timestamp::to_rfc3339).unwrap_or_default()
        ),
        Some(t) if !t.bootstrap => anyhow::bail!(
            "ROLLCALL_ADMIN_TOKEN holds the value of {} (\"{}\"), which is not the bootstrap \
             admin; set ROLLCALL_ADMIN_TOKEN to a new value (32+ characters)",
            t.describe(),
            t.name
        ),
        // The current bootstrap admin: only strays (stores from before
        // there was one at a time) are revoked.
        Some(t) => revoke_all(store, &live_bootstrap(Some(&t.id)), now).await,
        None => {
            // Revoke first: a crash in between leaves no bootstrap admin,
            // which the next start with this value creates, never two.
            revoke_all(store, &live_bootstrap(None), now).await?;
            create(store, hash, now).await
        }
    }?;
    Ok(None)
}

async fn revoke_all(store: &Store, old: &[TokenRow], now: Timestamp) -> anyhow::Result<()> {
    for t in old {
        if store
            .revoke_token(&t.id)
            .await
            .context("revoking the previous bootstrap admin token")?
        {
            audit(store, AuditAction::TokenRevoke, t, now).await?;
            tracing::info!(
                token = %t.describe(),
                "the previous bootstrap admin token was revoked"
            );
        }
    }
    Ok(())
}

async fn create(store: &Store, hash: [u8; 32], now: Timestamp) -> anyhow::Result<()> {
    let row = store
        .create_token(NewToken {
            hash,
            role: Role::Admin,
            name: "bootstrap admin".into(),
            site: None,
            area: None,
            bootstrap: true,
        })
        .await
        .context("storing the bootstrap admin token")?;
    audit(store, AuditAction::TokenCreate, &row, now).await
}

async fn audit(
    store: &Store,
    action: AuditAction,
    t: &TokenRow,
    now: Timestamp,
) -> anyhow::Result<()> {
    store
        .audit(AuditEntry {
            at: now,
            token_name: WHO.into(),
            role: Role::Admin,
            action,
            area: None,
            round_id: None,
            rows: None,
            target: Some(t.describe()),
        })
        .await
        .context("auditing the bootstrap admin token")
}

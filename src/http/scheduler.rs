//! Closes rounds by themselves at their deadline, the same way as
//! `POST /v1/rounds/{id}/close`, on the injected clock; and asks the store
//! for its periodic snapshot, so an idle server writes one too.

use std::sync::Arc;
use std::time::Duration;

use super::AppState;
use crate::engine::Command;

/// How often the scheduler looks for due rounds ("within a second").
const TICK: Duration = Duration::from_millis(200);

/// Every this many ticks (a minute) it asks whether a snapshot is due.
const SNAPSHOT_TICKS: u32 = 300;

pub fn spawn(state: Arc<AppState>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks = 0u32;
        loop {
            tick.tick().await;
            ticks = (ticks + 1) % SNAPSHOT_TICKS;
            if ticks == 0 {
                state.store.snapshot_if_due();
            }
            // Only the leader closes rounds (a standby's close would be
            // refused); a standby that takes over closes the overdue ones,
            // dated at their deadlines, at its first tick as leader.
            if !state.store.is_leader() {
                continue;
            }
            let now = state.now();
            let due: Vec<(u32, crate::domain::Timestamp)> = {
                let e = state.engine.read();
                e.due_rounds(now)
                    .into_iter()
                    .filter_map(|id| e.round(id).map(|r| (id, r.deadline)))
                    .collect()
            };
            for (id, deadline) in due {
                match state
                    .store
                    .command(Command::RoundClose {
                        id,
                        at: Some(deadline),
                    })
                    .await
                {
                    Ok(out) => {
                        state.cache.flushed(out.ticket).await;
                        tracing::info!(
                            round = id,
                            flipped = out.applied.flipped,
                            "round closed at its deadline"
                        );
                    }
                    Err(e) => {
                        tracing::error!(round = id, "closing a round at its deadline failed: {e}");
                    }
                }
            }
        }
    })
}

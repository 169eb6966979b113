//! `subscribe_all`: the quiz board of this replica. A `quizzes` snapshot first, then
//! `quiz_added` / `quiz_updated` as they happen and a `global` message every second.

use std::time::Duration;

use actix_ws::CloseCode;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::{Client, End, Stalled, WsState, close};
use crate::access::Viewer;

/// How often the global view (in flight, questions/s) is sent.
const GLOBAL_EVERY: Duration = Duration::from_secs(1);

pub async fn run(state: &WsState, mut client: Client, viewer: &Viewer) -> End {
    match serve(state, &mut client, viewer).await {
        Ok(()) => None,
        Err(end) => end,
    }
}

async fn serve(state: &WsState, client: &mut Client, viewer: &Viewer) -> Result<(), End> {
    let mut changes = state.board.subscribe();
    {
        send(client, json!({"type": "subscribed", "mode": "all"}).to_string()).await?;
        send(client, state.board.snapshot_json(viewer)).await?;
        let mut global = tokio::time::interval(GLOBAL_EVERY);
        global.tick().await;
        loop {
            tokio::select! {
                change = changes.recv() => match change {
                    Ok(change) if viewer.sees(change.owner.as_deref()) => {
                        send(client, String::from(&*change.text)).await?;
                    }
                    Ok(_) => {}
                    // Missed changes are replaced by a fresh snapshot.
                    Err(RecvError::Lagged(_)) => send(client, state.board.snapshot_json(viewer)).await?,
                    Err(RecvError::Closed) => return Err(close(CloseCode::Restart, "server shutting down")),
                },
                _ = global.tick() => send(client, state.board.global_json()).await?,
                tended = client.tend() => tended?,
            }
        }
    }
}

async fn send(client: &mut Client, text: String) -> Result<(), End> {
    client.send(text).await.map_err(|stalled| match stalled {
        Stalled::TooSlow => close(CloseCode::Policy, "too slow"),
        Stalled::Gone => None,
    })
}

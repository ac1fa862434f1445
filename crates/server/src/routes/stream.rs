//! Live log streaming over server-sent events.
//!
//! The stream replays stored lines after `after_seq` (or `Last-Event-ID`),
//! then waits for a wake-up from the notifier and reads the store again, so
//! a line is never skipped even when a wake-up is missed or the line was
//! written through another replica (a periodic re-read covers that case).

use crate::error::{ApiError, ApiResult};
use crate::extract::{parse_id, State, TeamAuth};
use crate::routes::runs::LogsQuery;
use axum::extract::{Path, Query, State as AxState};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use minitower_core::api::{ErrorEnvelope, StreamEnd};
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Lines read from the store per query while catching up.
const PAGE: i64 = 1000;
/// Re-read the store at least this often even without a wake-up.
const RECHECK: Duration = Duration::from_secs(2);

/// Follows a run's logs until it ends.
#[utoipa::path(get, path = "/api/v1/runs/{run}/logs/stream", tag = "runs", params(("run" = i64, Path), LogsQuery),
    responses((status = 200, content_type = "text/event-stream", description = "events `log` (id = seq) then `end`"),
              (status = 404, body = ErrorEnvelope)), security(("team" = [])))]
pub async fn stream_logs(
    AxState(st): AxState<State>,
    auth: TeamAuth,
    Path(run): Path<String>,
    headers: HeaderMap,
    q: Result<Query<LogsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let id = parse_id(&run, "run")?;
    let Query(q) = q.map_err(|e| ApiError::invalid_request(e.body_text()))?;
    if st.store.get_run(auth.team.id, id).await?.is_none() {
        return Err(ApiError::not_found("run"));
    }
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    let after = last_event_id.or(q.after_seq).unwrap_or(0).max(0);
    let (tx, rx) = mpsc::channel::<Result<Event, Infallible>>(256);
    tokio::spawn(pump(st.clone(), auth.team.id, id, after, tx));
    let sse = Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)));
    Ok(crate::routes::RunIdExt::attach(id, sse.into_response()))
}

async fn pump(
    st: State,
    team_id: i64,
    run_id: i64,
    mut after: i64,
    tx: mpsc::Sender<Result<Event, Infallible>>,
) {
    let mut wake = st.notifier.watch_runs();
    loop {
        // Read the status first: if the run is terminal now, every line it
        // will ever have is already stored, so the read below is complete.
        let status = match st.store.run_status(run_id).await {
            Ok(Some(s)) => s,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(run_id, error = %e, "log stream: status read failed");
                return;
            }
        };
        loop {
            let lines = match st.store.get_logs(Some(team_id), run_id, after, PAGE).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(run_id, error = %e, "log stream: read failed");
                    return;
                }
            };
            let n = lines.len() as i64;
            for line in lines {
                after = line.seq;
                let data = serde_json::to_string(&line).unwrap_or_default();
                let ev = Event::default()
                    .event("log")
                    .id(line.seq.to_string())
                    .data(data);
                if tx.send(Ok(ev)).await.is_err() {
                    return;
                }
            }
            if n < PAGE {
                break;
            }
        }
        if status.is_terminal() {
            let data = serde_json::to_string(&StreamEnd { status }).unwrap_or_default();
            let _ = tx.send(Ok(Event::default().event("end").data(data))).await;
            return;
        }
        // Wait for news about this run, a periodic recheck, the client
        // leaving, or shutdown.
        let deadline = tokio::time::sleep(RECHECK);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = st.shutdown.cancelled() => return,
                _ = tx.closed() => return,
                _ = &mut deadline => break,
                msg = wake.recv() => match msg {
                    Ok(id) if id == run_id => break,
                    Ok(_) => continue,
                    Err(RecvError::Lagged(_)) => break,
                    Err(RecvError::Closed) => return,
                },
            }
        }
    }
}

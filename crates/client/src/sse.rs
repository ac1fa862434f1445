//! Parsing of the log stream's server-sent events.

use crate::{ClientError, ClientResult};
use eventsource_stream::Eventsource;
use futures::{Stream, StreamExt};
use minitower_core::api::{LogLine, StreamEnd};
use minitower_core::RunStatus;

/// One event of `GET /api/v1/runs/{run}/logs/stream`.
#[derive(Debug, Clone, PartialEq)]
pub enum LogEvent {
    /// A stored or live log line.
    Log(LogLine),
    /// The run reached a terminal status; the stream ends after this.
    End(RunStatus),
}

/// Decodes the SSE body; unknown events (keep-alives, comments) are skipped.
pub(crate) fn log_events(
    resp: reqwest::Response,
) -> impl Stream<Item = ClientResult<LogEvent>> + Send + 'static {
    resp.bytes_stream()
        .eventsource()
        .filter_map(|ev| async move {
            match ev {
                Err(e) => Some(Err(ClientError::Transport(e.to_string()))),
                Ok(ev) => match ev.event.as_str() {
                    "log" => Some(
                        serde_json::from_str::<LogLine>(&ev.data)
                            .map(LogEvent::Log)
                            .map_err(|e| ClientError::Decode(e.to_string())),
                    ),
                    "end" => Some(
                        serde_json::from_str::<StreamEnd>(&ev.data)
                            .map(|e| LogEvent::End(e.status))
                            .map_err(|e| ClientError::Decode(e.to_string())),
                    ),
                    _ => None,
                },
            }
        })
}

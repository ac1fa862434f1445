//! A hand-written `text/event-stream` reader, so ids and event names are
//! checked exactly as sent.

use futures::StreamExt;
use minitower_client::Client;
use std::time::Duration;

use super::HANG;

/// One parsed SSE event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SseEvent {
    pub event: String,
    pub id: Option<String>,
    pub data: String,
}

/// Reads `text/event-stream` by hand so ids and event names are checked as sent.
pub struct SseReader {
    stream: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: String,
}

impl SseReader {
    pub fn new(resp: reqwest::Response) -> Self {
        let ct = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(ct.starts_with("text/event-stream"), "content-type {ct:?}");
        SseReader {
            stream: resp.bytes_stream().boxed(),
            buf: String::new(),
        }
    }

    /// The next event (comments and keep-alives skipped); `None` at end of stream.
    pub async fn next(&mut self) -> Option<SseEvent> {
        tokio::time::timeout(HANG, self.next_inner())
            .await
            .expect("SSE event did not arrive")
    }

    async fn next_inner(&mut self) -> Option<SseEvent> {
        loop {
            while let Some(pos) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..pos + 2).collect();
                let mut ev = SseEvent {
                    event: "message".into(),
                    ..Default::default()
                };
                let mut any = false;
                let mut data: Vec<&str> = Vec::new();
                for l in block.lines() {
                    if l.is_empty() || l.starts_with(':') {
                        continue;
                    }
                    let (k, v) = l.split_once(':').unwrap_or((l, ""));
                    let v = v.strip_prefix(' ').unwrap_or(v);
                    any = true;
                    match k {
                        "event" => ev.event = v.to_string(),
                        "id" => ev.id = Some(v.to_string()),
                        "data" => data.push(v),
                        _ => {}
                    }
                }
                if any {
                    ev.data = data.join("\n");
                    return Some(ev);
                }
            }
            match self.stream.next().await {
                Some(Ok(chunk)) => self
                    .buf
                    .push_str(&String::from_utf8_lossy(&chunk).replace("\r\n", "\n")),
                Some(Err(e)) => panic!("SSE stream broke: {e}"),
                None => return None,
            }
        }
    }
}

/// Opens the raw log stream of a run.
pub async fn open_stream(
    team: &Client,
    run_id: i64,
    query: &str,
    last_event_id: Option<&str>,
) -> SseReader {
    let mut rb = team
        .raw(
            reqwest::Method::GET,
            &format!("/api/v1/runs/{run_id}/logs/stream{query}"),
        )
        .header(reqwest::header::ACCEPT, "text/event-stream")
        .timeout(Duration::from_secs(120));
    if let Some(id) = last_event_id {
        rb = rb.header("Last-Event-ID", id);
    }
    let resp = rb.send().await.expect("stream request");
    assert_eq!(resp.status().as_u16(), 200);
    SseReader::new(resp)
}

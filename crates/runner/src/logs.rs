//! Log shipping for one attempt.
//!
//! Lines are numbered as they arrive (from the lease's `last_log_seq + 1`,
//! strictly increasing), kept until acknowledged and sent in batches: at 500
//! lines, when the oldest unsent line is 200 ms old, and at once when the
//! attempt finishes. One request is in flight at a time, so order is kept and
//! a failed batch is simply re-sent (the server stores re-sent seqs once).
//! Past the byte budget lines are dropped and counted; one marker line at the
//! end says how much. A log-batch ack may carry `cancel_requested`, which is
//! passed on like a heartbeat's.

use crate::lease::Signals;
use crate::registration::Session;
use crate::retry::{self, CallError, Delays};
use chrono::Utc;
use futures::future::BoxFuture;
use minitower_core::api::{LogBatchAck, NewLogLine};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Lines per request.
pub const BATCH_LINES: usize = 500;
/// Oldest a line waits before it is sent.
pub const BATCH_DELAY: Duration = Duration::from_millis(200);
/// Bytes of line text per request (well under the server's body limit).
const BATCH_BYTES: usize = 2 << 20;

enum Msg {
    Line { stream: &'static str, line: String },
    Finish(Finish),
}

/// How the attempt's output ends.
enum Finish {
    /// Send everything; true once all of it was acknowledged.
    Ship(oneshot::Sender<bool>),
    /// Send all but what fits in one batch, and hand that last batch over
    /// to go with the result; `None` when the attempt got fenced first.
    Hand(oneshot::Sender<Option<Vec<NewLogLine>>>),
}

impl Finish {
    fn fenced(self) {
        match self {
            Finish::Ship(tx) => drop(tx.send(false)),
            Finish::Hand(tx) => drop(tx.send(None)),
        }
    }
}

/// Where an attempt's output goes; cheap to clone.
#[derive(Clone)]
pub struct LogSink {
    tx: Option<mpsc::UnboundedSender<Msg>>,
}

impl LogSink {
    /// A sink that drops everything (for work not tied to a run).
    pub fn discard() -> LogSink {
        LogSink { tx: None }
    }

    /// Queues one line.
    pub fn send(&self, stream: &'static str, line: String) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Msg::Line { stream, line });
        }
    }

    /// A sink whose lines can be read back (for tests).
    #[cfg(test)]
    pub fn capture() -> (LogSink, impl FnMut() -> Vec<(String, String)>) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let read = move || {
            let mut out = Vec::new();
            while let Ok(m) = rx.try_recv() {
                if let Msg::Line { stream, line } = m {
                    out.push((stream.to_string(), line));
                }
            }
            out
        };
        (LogSink { tx: Some(tx) }, read)
    }
}

/// The task that sends one attempt's lines.
pub struct LogShipper {
    sink: LogSink,
    task: JoinHandle<()>,
}

/// Where a shipper sends its batches.
pub struct Target {
    /// The runner's session: a batch refused with 401 (the runner token was
    /// rotated) registers again and is sent with the new token.
    pub session: Arc<Session>,
    pub run_id: i64,
    pub lease_token: String,
}

impl LogShipper {
    /// Starts shipping with seqs from `first_seq`, keeping at most `max_bytes` of text.
    pub fn start(target: Target, first_seq: i64, max_bytes: u64, signals: Signals) -> LogShipper {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(ship(target, rx, first_seq, max_bytes, signals));
        LogShipper {
            sink: LogSink { tx: Some(tx) },
            task,
        }
    }

    /// A handle to queue lines.
    pub fn sink(&self) -> LogSink {
        self.sink.clone()
    }

    /// Sends everything queued so far; true when all of it was acknowledged
    /// (false when the attempt got fenced first).
    pub async fn finish(self) -> bool {
        let (tx, rx) = oneshot::channel();
        if let Some(s) = &self.sink.tx {
            let _ = s.send(Msg::Finish(Finish::Ship(tx)));
        }
        let delivered = rx.await.unwrap_or(false);
        let _ = self.task.await;
        delivered
    }

    /// Sends everything queued so far except a last batch, which it returns
    /// for the result to carry (one call instead of a batch and a result);
    /// `None` when the attempt got fenced first.
    pub async fn finish_with_tail(self) -> Option<Vec<NewLogLine>> {
        let (tx, rx) = oneshot::channel();
        if let Some(s) = &self.sink.tx {
            let _ = s.send(Msg::Finish(Finish::Hand(tx)));
        }
        let tail = rx.await.unwrap_or(None);
        let _ = self.task.await;
        tail
    }

    /// Stops without sending anything more (the attempt is fenced).
    pub fn abandon(self) {
        self.task.abort();
    }
}

struct Pending {
    at: Instant,
    line: NewLogLine,
}

type Inflight = BoxFuture<'static, Result<LogBatchAck, CallError>>;

async fn ship(
    target: Target,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    first_seq: i64,
    max_bytes: u64,
    signals: Signals,
) {
    let mut budget = Budget {
        next_seq: first_seq,
        used: 0,
        max_bytes,
        dropped_lines: 0,
        dropped_bytes: 0,
    };
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut inflight: Option<(usize, Inflight)> = None;
    let mut retry_at: Option<Instant> = None;
    let mut finishing: Option<Finish> = None;
    let mut rx_open = true;
    let mut backoff = Delays::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        let now = Instant::now();
        if inflight.is_none()
            && matches!(finishing, Some(Finish::Hand(_)))
            && fits_one_batch(&pending)
        {
            if let Some(Finish::Hand(tx)) = finishing.take() {
                let _ = tx.send(Some(pending.drain(..).map(|p| p.line).collect()));
            }
            return;
        }
        if inflight.is_none() && !pending.is_empty() && retry_at.is_none_or(|t| now >= t) {
            let due = finishing.is_some()
                || pending.len() >= BATCH_LINES
                || pending.front().is_some_and(|p| now >= p.at + BATCH_DELAY);
            if due {
                retry_at = None;
                let mut bytes = 0;
                let batch: Vec<NewLogLine> = pending
                    .iter()
                    .take(BATCH_LINES)
                    .take_while(|p| {
                        bytes += p.line.line.len() + 64;
                        bytes <= BATCH_BYTES || p.line.seq == pending[0].line.seq
                    })
                    .map(|p| p.line.clone())
                    .collect();
                let session = target.session.clone();
                let fenced = signals.fenced.clone();
                let (run_id, token) = (target.run_id, target.lease_token.clone());
                let n = batch.len();
                inflight = Some((
                    n,
                    Box::pin(async move {
                        // One try (plus one after registering again on a
                        // 401): this loop schedules its own retries.
                        let once = Delays::limited(Duration::ZERO, Duration::ZERO, 0);
                        retry::call(&session, &fenced, once, "log batch", run_id, |client| {
                            let (batch, token) = (batch.clone(), &token);
                            async move { client.send_logs(run_id, token, batch).await }
                        })
                        .await
                    }),
                ));
            }
        }
        if pending.is_empty() && inflight.is_none() && (finishing.is_some() || !rx_open) {
            if let Some(Finish::Ship(done)) = finishing.take() {
                let _ = done.send(true);
            }
            return;
        }
        let wake = match (&inflight, pending.front()) {
            (None, Some(p)) => Some(retry_at.unwrap_or(p.at + BATCH_DELAY)),
            _ => None,
        };
        tokio::select! {
            biased;
            _ = signals.fenced.cancelled() => {
                if let Some(f) = finishing.take() {
                    f.fenced();
                }
                return;
            }
            r = async { (&mut inflight.as_mut().expect("guarded").1).await }, if inflight.is_some() => {
                let (n, _) = inflight.take().expect("guarded");
                match r {
                    Ok(ack) => {
                        backoff.reset();
                        pending.drain(..n.min(pending.len()));
                        if ack.cancel_requested && !signals.cancel.is_cancelled() {
                            signals.cancel.cancel();
                        }
                    }
                    Err(CallError::LeaseGone) => {
                        signals.fenced.cancel();
                    }
                    Err(CallError::Stopped) => {}
                    Err(CallError::Refused(e)) if e.is_transient() => {
                        let d = backoff.next_delay();
                        tracing::warn!(run_id = target.run_id, error = %e, retry_in = ?d, "log batch not delivered; will retry");
                        retry_at = Some(Instant::now() + d);
                    }
                    Err(CallError::Refused(e)) => {
                        tracing::error!(run_id = target.run_id, error = %e, lines = n, "log batch refused; dropping it");
                        pending.drain(..n.min(pending.len()));
                    }
                }
            }
            m = rx.recv(), if rx_open && finishing.is_none() => match m {
                Some(Msg::Line { stream, line }) => budget.accept(&mut pending, stream, line),
                Some(Msg::Finish(done)) => {
                    // Lines queued before the finish request are already in the channel.
                    while let Ok(Msg::Line { stream, line }) = rx.try_recv() {
                        budget.accept(&mut pending, stream, line);
                    }
                    if let Some(marker) = budget.marker() {
                        budget.push(&mut pending, "stderr", marker);
                    }
                    finishing = Some(done);
                }
                None => rx_open = false,
            },
            _ = sleep_until_opt(wake) => {}
        }
    }
}

/// Whether what is left goes in one batch (the last one, handed to the result).
fn fits_one_batch(pending: &VecDeque<Pending>) -> bool {
    pending.len() <= BATCH_LINES
        && pending
            .iter()
            .map(|p| p.line.line.len() + 64)
            .sum::<usize>()
            <= BATCH_BYTES
}

/// Seq numbering and the byte budget of one attempt.
struct Budget {
    next_seq: i64,
    used: u64,
    max_bytes: u64,
    dropped_lines: u64,
    dropped_bytes: u64,
}

impl Budget {
    fn accept(&mut self, pending: &mut VecDeque<Pending>, stream: &'static str, line: String) {
        let len = line.len() as u64;
        if stream == crate::events::STREAM {
            // Lifecycle events are small and say how the run went: a
            // chatty script does not crowd them out.
            self.push(pending, stream, line);
        } else if self.used + len > self.max_bytes {
            self.dropped_lines += 1;
            self.dropped_bytes += len;
        } else {
            self.used += len;
            self.push(pending, stream, line);
        }
    }

    fn push(&mut self, pending: &mut VecDeque<Pending>, stream: &str, line: String) {
        pending.push_back(Pending {
            at: Instant::now(),
            line: NewLogLine {
                seq: self.next_seq,
                stream: stream.to_string(),
                line,
                logged_at: Some(Utc::now()),
            },
        });
        self.next_seq += 1;
    }

    fn marker(&self) -> Option<String> {
        (self.dropped_lines > 0).then(|| {
            format!(
                "[minitower] log limit of {} bytes reached: dropped {} lines ({} bytes)",
                self.max_bytes, self.dropped_lines, self.dropped_bytes
            )
        })
    }
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

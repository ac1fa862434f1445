//! Storage types of retention (issue 14): deleting finished runs in small
//! batches and giving the space back. The SQL lives once in
//! `minitower-store-sql` (`retention.rs`), the conformance tests in
//! `conformance/retention.rs`.

/// How much one purge transaction may delete. Both bounds keep the write
/// lock short: SQLite has one writer, and a batch is one transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurgeLimits {
    /// Runs per transaction at most (at least one is always taken).
    pub max_runs: i64,
    /// Log lines per transaction at most, counted before the batch is cut:
    /// a batch stops before the run that would pass it, except its first
    /// run, so a run with more lines than this still goes (alone).
    pub max_log_lines: i64,
}

impl Default for PurgeLimits {
    fn default() -> Self {
        PurgeLimits {
            max_runs: 500,
            max_log_lines: 100_000,
        }
    }
}

/// What one purge transaction deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub runs: u64,
    pub attempts: u64,
    pub log_lines: u64,
    /// Webhook events of the deleted runs (delivered or failed) and their
    /// delivery attempts.
    pub webhook_events: u64,
    pub webhook_deliveries: u64,
}

impl Purged {
    /// Adds another batch's counts.
    pub fn add(&mut self, other: &Purged) {
        self.runs += other.runs;
        self.attempts += other.attempts;
        self.log_lines += other.log_lines;
        self.webhook_events += other.webhook_events;
        self.webhook_deliveries += other.webhook_deliveries;
    }
}

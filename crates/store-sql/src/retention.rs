//! Retention: deleting old finished runs in small transactions, giving the
//! freed space back, and telling the artifact collector which hashes are
//! still used.
//!
//! A purge batch is one write transaction: pick (and on PostgreSQL lock,
//! skipping rows another replica holds) the oldest finished runs before the
//! cutoff, cut the batch at the log-line budget, then delete children
//! before parents (delivery attempts, webhook events, log lines, attempts,
//! runs) by explicit id, and check that exactly the picked runs went. A
//! terminal run never changes again (a trigger refuses it), so nothing can
//! make a picked run live between the pick and the delete.

use crate::db::{self, get, ms};
use crate::{SqlStore, Tx};
use chrono::{DateTime, Utc};
use minitower_store::{PurgeLimits, Purged, StoreError, StoreResult};
use std::collections::HashSet;

/// Finished runs before `$1`, oldest first, at most `$2`, with their log
/// line count (the highest seq: seqs start at 1 and run on across
/// attempts; one index seek per run). Skipped: the newest run of each app
/// (run numbers and, on SQLite, row ids are assigned past the highest one
/// stored, so keeping it means none is ever handed out twice) and runs
/// whose webhook event is still being delivered: pending for an enabled
/// endpoint, which ends with the retry schedule. A disabled endpoint's
/// pending events wait for nobody, so they do not keep a run forever.
const CANDIDATES: &str = "SELECT r.id, \
         (SELECT COALESCE(MAX(l.seq), 0) FROM run_logs l WHERE l.run_id = r.id) AS lines \
     FROM runs r \
     WHERE r.finished_at IS NOT NULL AND r.finished_at < $1 \
       AND EXISTS (SELECT 1 FROM runs n WHERE n.app_id = r.app_id AND n.run_no > r.run_no) \
       AND NOT EXISTS (SELECT 1 FROM webhook_outbox o JOIN webhooks w ON w.id = o.webhook_id \
                       WHERE o.run_id = r.id AND o.status = 'pending' AND w.enabled = TRUE) \
     ORDER BY r.finished_at, r.id LIMIT $2 \
     FOR UPDATE SKIP LOCKED";

/// The runs of a batch: the candidates up to the log-line budget, the first
/// one always (a run with more lines than the budget still goes, alone).
fn cut(candidates: &[(i64, i64)], max_log_lines: i64) -> Vec<i64> {
    let mut lines = 0i64;
    let mut out = Vec::new();
    for (id, n) in candidates {
        lines = lines.saturating_add(*n);
        if !out.is_empty() && lines > max_log_lines {
            break;
        }
        out.push(*id);
    }
    out
}

/// `$1, $2, ...` for `n` bound values.
fn placeholders(n: usize) -> String {
    (1..=n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs `sql` (with `{ids}` replaced by the placeholders) once for `ids`;
/// returns the rows it changed.
async fn delete(tx: &mut Tx, sql: &str, ids: &[i64]) -> StoreResult<u64> {
    let sql = sql.replace("{ids}", &placeholders(ids.len()));
    let mut q = sqlx::query(&sql);
    for id in ids {
        q = q.bind(*id);
    }
    Ok(q.execute(&mut **tx).await.map_err(db::err)?.rows_affected())
}

pub(crate) async fn purge_finished_runs(
    s: &SqlStore,
    finished_before: DateTime<Utc>,
    limits: PurgeLimits,
) -> StoreResult<Purged> {
    let mut tx = s.write().await?;
    let candidates: Vec<(i64, i64)> = sqlx::query_as(&s.sql(CANDIDATES))
        .bind(ms(finished_before))
        .bind(limits.max_runs.max(1))
        .fetch_all(&mut *tx)
        .await
        .map_err(db::err)?;
    let ids = cut(&candidates, limits.max_log_lines.max(1));
    if ids.is_empty() {
        tx.commit().await.map_err(db::err)?;
        return Ok(Purged::default());
    }
    let purged = Purged {
        webhook_deliveries: delete(
            &mut tx,
            "DELETE FROM webhook_deliveries WHERE outbox_id IN \
             (SELECT id FROM webhook_outbox WHERE run_id IN ({ids}))",
            &ids,
        )
        .await?,
        webhook_events: delete(
            &mut tx,
            "DELETE FROM webhook_outbox WHERE run_id IN ({ids})",
            &ids,
        )
        .await?,
        log_lines: delete(
            &mut tx,
            "DELETE FROM run_logs WHERE run_id IN ({ids})",
            &ids,
        )
        .await?,
        attempts: delete(
            &mut tx,
            "DELETE FROM run_attempts WHERE run_id IN ({ids})",
            &ids,
        )
        .await?,
        // The terminal check again, so this statement alone can never
        // delete a live run whatever the code above did.
        runs: delete(
            &mut tx,
            "DELETE FROM runs WHERE id IN ({ids}) AND finished_at IS NOT NULL",
            &ids,
        )
        .await?,
    };
    if purged.runs != ids.len() as u64 {
        // Rolled back on drop: nothing of the batch is deleted.
        return Err(StoreError::Conflict(format!(
            "retention: {} of {} picked runs could be deleted",
            purged.runs,
            ids.len()
        )));
    }
    tx.commit().await.map_err(db::err)?;
    Ok(purged)
}

pub(crate) async fn reclaim_space(s: &SqlStore) -> StoreResult<u64> {
    let (Some(step), Some(left)) = (s.dialect.reclaim_step, s.dialect.reclaimable) else {
        return Ok(0);
    };
    let before: i64 = sqlx::query_scalar(left)
        .fetch_one(&mut s.write_conn().await?)
        .await
        .map_err(db::err)?;
    if before <= 0 {
        return Ok(0);
    }
    sqlx::query(step)
        .execute(&mut s.write_conn().await?)
        .await
        .map_err(db::err)?;
    let after: i64 = sqlx::query_scalar(left)
        .fetch_one(&mut s.write_conn().await?)
        .await
        .map_err(db::err)?;
    Ok(after.max(0) as u64)
}

/// Hashes asked about per statement at most.
const HASHES_PER_QUERY: usize = 500;

pub(crate) async fn referenced_artifacts(
    s: &SqlStore,
    sha256s: &[String],
) -> StoreResult<HashSet<String>> {
    let mut found = HashSet::new();
    for chunk in sha256s.chunks(HASHES_PER_QUERY) {
        let sql = format!(
            "SELECT DISTINCT artifact_sha256 FROM versions WHERE artifact_sha256 IN ({})",
            placeholders(chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for sha in chunk {
            q = q.bind(sha.as_str());
        }
        for row in q
            .fetch_all(&mut s.read_conn().await?)
            .await
            .map_err(db::err)?
        {
            found.insert(get::<String>(&row, "artifact_sha256")?);
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_stop_at_the_log_budget_but_always_take_one_run() {
        assert_eq!(cut(&[], 10), Vec::<i64>::new());
        assert_eq!(cut(&[(1, 4), (2, 4), (3, 4)], 10), vec![1, 2]);
        assert_eq!(cut(&[(1, 4), (2, 6), (3, 0)], 10), vec![1, 2, 3]);
        assert_eq!(cut(&[(1, 50), (2, 1)], 10), vec![1], "a big run goes alone");
        assert_eq!(cut(&[(1, i64::MAX), (2, 1)], 10), vec![1]);
    }

    #[test]
    fn placeholders_are_numbered_from_one() {
        assert_eq!(placeholders(1), "$1");
        assert_eq!(placeholders(3), "$1, $2, $3");
    }
}

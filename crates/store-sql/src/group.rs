//! Group commit on SQLite's writer: transactions that queue for the writer
//! while one runs share one `COMMIT`, so their pages go to the WAL once.
//!
//! Each write transaction is a *unit*: a `SAVEPOINT` inside the writer's one
//! open SQLite transaction (the *group*, begun by the first unit). A unit
//! that fails rolls back to its savepoint and leaves the others' work in
//! place. A unit that succeeds releases its savepoint, lets the writer go to
//! the next caller in line and queues for it once more; whoever of the
//! group's members gets the writer first with the group still open commits
//! it and tells every member the outcome. With no one waiting, that is the
//! unit itself, at once: an idle store commits each transaction alone.
//!
//! Invariant: a caller hears "committed" only after the `COMMIT` that holds
//! its changes succeeded, and hears an error whenever its changes were not
//! committed (its own failure, a failed `COMMIT`, a group SQLite rolled
//! back by itself after an I/O error). Nothing acknowledged is lost, and no
//! group stays open while a member waits: each member is in the writer's
//! FIFO queue until its group ends, and one that stops waiting (a cancelled
//! request) commits the group itself if it can take the writer. The
//! conformance suite's concurrent-caller races run through groups; the
//! tests below pin the unit, failure and poisoning rules.

use crate::lite::{Lite, LiteError, LiteSlot};
use tokio::sync::watch;

/// What a group's members hear: `None` while it is open.
pub(crate) type Outcome = Option<Result<(), LiteError>>;

/// The writer's open transaction and the units committed into it.
pub(crate) struct OpenGroup {
    id: u64,
    members: usize,
    done: watch::Sender<Outcome>,
}

/// A unit released into a group, waiting for the group's outcome.
pub(crate) struct Member {
    id: u64,
    outcome: watch::Receiver<Outcome>,
}

impl Lite {
    /// Starts a unit: joins the open group, or begins one with `begin`.
    pub(crate) fn begin_unit(&mut self, begin: &str) -> Result<(), sqlx::Error> {
        self.check_group();
        if self.group.is_none() {
            self.batch(begin)?;
            self.groups += 1;
            self.group = Some(OpenGroup {
                id: self.groups,
                members: 0,
                done: watch::Sender::new(None),
            });
        }
        if let Err(e) = self.batch("SAVEPOINT mt_unit") {
            self.settle();
            return Err(e);
        }
        Ok(())
    }

    /// Undoes the current unit; the group's other members keep their work.
    pub(crate) fn abort_unit(&mut self) {
        if self.in_transaction() {
            if let Err(e) = self.batch("ROLLBACK TO mt_unit; RELEASE mt_unit") {
                tracing::error!(error = %e, "rolling back a unit on SQLite's writer failed");
            }
        }
        self.settle();
    }

    /// Ends the current unit into its group, to be committed with it.
    pub(crate) fn release_unit(&mut self) -> Result<Member, sqlx::Error> {
        if let Err(e) = self.batch("RELEASE mt_unit") {
            self.abort_unit();
            return Err(e);
        }
        self.check_group();
        let Some(group) = self.group.as_mut() else {
            return Err(LiteError::new("SQLite rolled the transaction back").into());
        };
        group.members += 1;
        Ok(Member {
            id: group.id,
            outcome: group.done.subscribe(),
        })
    }

    /// Commits the open group, if any, and tells its members.
    pub(crate) fn commit_group(&mut self) {
        self.check_group();
        let Some(group) = self.group.take() else {
            return;
        };
        let outcome = match self.batch("COMMIT") {
            Ok(()) => Ok(()),
            Err(e) => {
                if self.in_transaction() {
                    let _ = self.batch("ROLLBACK");
                }
                Err(LiteError::from(&e))
            }
        };
        group.done.send_replace(Some(outcome));
    }

    /// The open group's id.
    fn group_id(&self) -> Option<u64> {
        self.group.as_ref().map(|g| g.id)
    }

    /// A group whose transaction SQLite ended by itself (after an I/O error
    /// or a full disk) is lost: its members hear so, and it is gone.
    fn check_group(&mut self) {
        if self.group.is_some() && !self.in_transaction() {
            if let Some(group) = self.group.take() {
                let lost = LiteError::new("SQLite rolled the transaction back");
                group.done.send_replace(Some(Err(lost)));
            }
        }
    }

    /// Ends an open group no unit was released into.
    fn settle(&mut self) {
        self.check_group();
        if self.group.as_ref().is_some_and(|g| g.members == 0) {
            self.group = None;
            if let Err(e) = self.batch("ROLLBACK") {
                tracing::error!(error = %e, "ending an empty group on SQLite's writer failed");
            }
        }
    }
}

impl Member {
    /// Waits for the group's outcome, committing the group itself when it
    /// gets the writer first.
    pub(crate) async fn outcome(self, writer: LiteSlot) -> Result<(), sqlx::Error> {
        let mut waiting = Waiting {
            writer: writer.clone(),
            id: self.id,
            armed: true,
        };
        let mut told = self.outcome.clone();
        let heard = tokio::select! {
            biased;
            heard = told.wait_for(Option::is_some) => heard.map(|o| o.clone()).ok(),
            mut guard = writer.lock_owned() => {
                if let Some(lite) = guard.as_mut() {
                    if lite.group_id() == Some(self.id) {
                        lite.commit_group();
                    }
                }
                drop(guard);
                Some(self.outcome.borrow().clone())
            }
        };
        waiting.armed = false;
        match heard.flatten() {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(e.into()),
            None => Err(LiteError::new("the store closed before the commit").into()),
        }
    }
}

/// A member that stops waiting commits its group if the writer is free
/// (otherwise its holder is a unit that will, or a caller that commits
/// open groups before anything else).
struct Waiting {
    writer: LiteSlot,
    id: u64,
    armed: bool,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Ok(mut guard) = self.writer.try_lock() {
            if let Some(lite) = guard.as_mut() {
                if lite.group_id() == Some(self.id) {
                    lite.commit_group();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn writer() -> (tempfile::TempDir, std::path::PathBuf, Lite) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.db");
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode = WAL; CREATE TABLE p (id INTEGER PRIMARY KEY); \
             CREATE TABLE t (name TEXT NOT NULL, \
             p INTEGER REFERENCES p(id) DEFERRABLE INITIALLY DEFERRED);",
        )
        .unwrap();
        let l = Lite::open(&path, true, "PRAGMA foreign_keys = ON;").unwrap();
        (dir, path, l)
    }

    /// Names in `t` as another connection sees them: committed ones only.
    fn committed(path: &std::path::Path) -> Vec<String> {
        let c = rusqlite::Connection::open(path).unwrap();
        let mut s = c.prepare("SELECT name FROM t ORDER BY name").unwrap();
        let names = s.query_map([], |r| r.get(0)).unwrap();
        names.map(Result::unwrap).collect()
    }

    /// One unit that adds `name`, released into the group.
    fn unit(l: &mut Lite, name: &str) -> Member {
        l.begin_unit("BEGIN IMMEDIATE").unwrap();
        insert(l, name);
        l.release_unit().unwrap()
    }

    fn insert(l: &mut Lite, name: &str) {
        l.batch(&format!("INSERT INTO t (name) VALUES ('{name}')"))
            .unwrap();
    }

    #[test]
    fn a_failed_unit_leaves_the_rest_of_its_group() {
        let (_d, path, mut l) = writer();
        let a = unit(&mut l, "a");
        l.begin_unit("BEGIN IMMEDIATE").unwrap();
        insert(&mut l, "b");
        l.abort_unit();
        assert!(
            committed(&path).is_empty(),
            "nothing is visible before the commit"
        );
        assert!(a.outcome.borrow().is_none(), "the member still waits");
        l.commit_group();
        assert!(matches!(*a.outcome.borrow(), Some(Ok(()))));
        assert_eq!(committed(&path), ["a"]);
        assert!(!l.in_transaction());
    }

    #[test]
    fn a_group_no_unit_made_it_into_ends() {
        let (_d, path, mut l) = writer();
        l.begin_unit("BEGIN IMMEDIATE").unwrap();
        insert(&mut l, "a");
        l.abort_unit();
        assert!(!l.in_transaction(), "the writer's transaction ended");
        assert!(l.group_id().is_none());
        assert!(committed(&path).is_empty());
    }

    #[test]
    fn a_failed_commit_reaches_every_member() {
        let (_d, path, mut l) = writer();
        let a = unit(&mut l, "a");
        l.begin_unit("BEGIN IMMEDIATE").unwrap();
        // checked only at COMMIT: the whole group fails there
        l.batch("INSERT INTO t (name, p) VALUES ('b', 42)").unwrap();
        let b = l.release_unit().unwrap();
        l.commit_group();
        for m in [a, b] {
            assert!(
                matches!(&*m.outcome.borrow(), Some(Err(_))),
                "told of the failure"
            );
        }
        assert!(committed(&path).is_empty());
        assert!(!l.in_transaction());
        // and the writer goes on
        let c = unit(&mut l, "c");
        l.commit_group();
        assert!(matches!(*c.outcome.borrow(), Some(Ok(()))));
        assert_eq!(committed(&path), ["c"]);
    }

    #[test]
    fn a_group_sqlite_ended_by_itself_is_reported_lost() {
        let (_d, path, mut l) = writer();
        let a = unit(&mut l, "a");
        // what an I/O error does: the transaction is gone
        l.batch("ROLLBACK").unwrap();
        l.begin_unit("BEGIN IMMEDIATE").unwrap();
        assert!(
            matches!(&*a.outcome.borrow(), Some(Err(_))),
            "not reported committed"
        );
        insert(&mut l, "b");
        let b = l.release_unit().unwrap();
        l.commit_group();
        assert!(matches!(*b.outcome.borrow(), Some(Ok(()))));
        assert_eq!(committed(&path), ["b"]);
    }

    #[tokio::test]
    async fn members_commit_their_group_when_they_get_the_writer() {
        let (_d, path, l) = writer();
        let slot: LiteSlot = Arc::new(tokio::sync::Mutex::new(Some(l)));
        let mut guard = slot.clone().lock_owned().await;
        let lite = guard.as_mut().unwrap();
        let a = unit(lite, "a");
        let b = unit(lite, "b");
        drop(guard);
        // `a` takes the writer first and commits both; `b` hears it
        let (ra, rb) = tokio::join!(a.outcome(slot.clone()), b.outcome(slot.clone()));
        ra.unwrap();
        rb.unwrap();
        assert_eq!(committed(&path), ["a", "b"]);
        assert!(slot.lock().await.as_ref().unwrap().group_id().is_none());
    }

    #[tokio::test]
    async fn a_member_that_stops_waiting_commits_a_free_writer_s_group() {
        let (_d, path, l) = writer();
        let slot: LiteSlot = Arc::new(tokio::sync::Mutex::new(Some(l)));
        let mut guard = slot.clone().lock_owned().await;
        let lite = guard.as_mut().unwrap();
        let a = unit(lite, "a");
        // the writer is busy, so the member waits...
        let mut waiting = Box::pin(a.outcome(slot.clone()));
        let polled = futures::poll!(waiting.as_mut());
        assert!(polled.is_pending(), "it waits for the busy writer");
        assert!(committed(&path).is_empty(), "nothing committed yet");
        // ...the writer comes free, and the request is cancelled before the
        // member runs again: it commits the group as it goes
        drop(guard);
        drop(waiting);
        assert_eq!(committed(&path), ["a"]);
    }
}

//! The origin's append-only gift ledger in embedded SQLite. A gift is recorded once per
//! (broadcast, client id): a retry of the same gift finds its first record and is not counted
//! again. A record is durable (`synchronous = FULL`) before [`Ledger::record`] returns, so the
//! `events` object that tells the viewer "sent" never precedes the record.
//!
//! The same file keeps the moderation action log ([`Ledger::record_action`]): who did what
//! to which broadcast and when, replayed into the broadcast's state when the origin starts
//! it again ([`Ledger::actions`]).

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, MutexGuard};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

/// Why the ledger failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// SQLite refused an operation (unreadable file, full disk, corrupt database).
    #[error("gift ledger: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The blocking task doing the write was cancelled or panicked (shutdown).
    #[error("gift ledger: write interrupted: {0}")]
    Interrupted(String),
}

/// One gift as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// Its sequence number in the ledger (unique across broadcasts).
    pub seq: u64,
    /// Whether this call recorded it (false: a retry of a gift already recorded).
    pub new: bool,
    /// The amount as first recorded (a retry cannot change it).
    pub amount: u64,
    /// The kind as first recorded.
    pub kind: u64,
}

/// A broadcast's gift totals (`GET /v1/gifts/{broadcast}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Distinct gifts recorded.
    pub gifts: u64,
    /// Sum of their amounts.
    pub amount: u64,
}

/// One moderation action as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedAction {
    /// Its sequence number (unique across broadcasts).
    pub seq: u64,
    /// The moderator's token `sub`.
    pub moderator: String,
    /// The encoded action ([`Action::to_bytes`](super::moderation::Action::to_bytes)).
    pub action: Vec<u8>,
    /// When the origin recorded it, ms since the Unix epoch.
    pub at_ms: u64,
}

/// The ledger: one SQLite connection behind a mutex (writes are serialized by SQLite anyway).
#[derive(Debug)]
pub struct Ledger {
    db: Mutex<Connection>,
}

impl Ledger {
    /// Open (creating if needed) the ledger at `path`.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        let db = Connection::open(path)?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS gifts (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                broadcast TEXT NOT NULL,
                client_id BLOB NOT NULL,
                kind INTEGER NOT NULL,
                amount INTEGER NOT NULL,
                recorded_ms INTEGER NOT NULL,
                UNIQUE (broadcast, client_id)
            );
            CREATE TABLE IF NOT EXISTS moderation (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                broadcast TEXT NOT NULL,
                moderator TEXT NOT NULL,
                action BLOB NOT NULL,
                recorded_ms INTEGER NOT NULL
            );
            CREATE INDEX IF NOT EXISTS moderation_by_broadcast ON moderation (broadcast, seq);",
        )?;
        Ok(Self { db: Mutex::new(db) })
    }

    fn db(&self) -> MutexGuard<'_, Connection> {
        self.db.lock()
    }

    /// Record a gift unless (broadcast, client id) is already recorded; either way return its
    /// record.
    pub fn record(
        &self,
        broadcast: &str,
        client_id: &[u8],
        kind: u64,
        amount: u64,
    ) -> Result<Recorded, LedgerError> {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        // SQLite integers are i64; amounts and kinds beyond that are clamped on the way in.
        let (kind_i, amount_i) = (
            i64::try_from(kind).unwrap_or(i64::MAX),
            i64::try_from(amount).unwrap_or(i64::MAX),
        );
        let db = self.db();
        let inserted = db.execute(
            "INSERT OR IGNORE INTO gifts (broadcast, client_id, kind, amount, recorded_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![broadcast, client_id, kind_i, amount_i, now_ms],
        )?;
        let (seq, kind, amount): (i64, i64, i64) = db.query_row(
            "SELECT seq, kind, amount FROM gifts WHERE broadcast = ?1 AND client_id = ?2",
            params![broadcast, client_id],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )?;
        Ok(Recorded {
            seq: seq.unsigned_abs(),
            new: inserted == 1,
            kind: kind.unsigned_abs(),
            amount: amount.unsigned_abs(),
        })
    }

    /// Record moderation `action` (its [`Action::to_bytes`](super::moderation::Action::to_bytes))
    /// by `moderator` on `broadcast` at `at_ms`; returns its sequence number.
    pub fn record_action(
        &self,
        broadcast: &str,
        moderator: &str,
        action: &[u8],
        at_ms: u64,
    ) -> Result<u64, LedgerError> {
        let db = self.db();
        db.execute(
            "INSERT INTO moderation (broadcast, moderator, action, recorded_ms) VALUES (?1, ?2, ?3, ?4)",
            params![
                broadcast,
                moderator,
                action,
                i64::try_from(at_ms).unwrap_or(i64::MAX)
            ],
        )?;
        Ok(db.last_insert_rowid().unsigned_abs())
    }

    /// The broadcast's moderation actions, oldest first: the last `limit` of them.
    pub fn actions(&self, broadcast: &str, limit: usize) -> Result<Vec<LoggedAction>, LedgerError> {
        let db = self.db();
        let mut statement = db.prepare(
            "SELECT seq, moderator, action, recorded_ms FROM moderation WHERE broadcast = ?1
             ORDER BY seq DESC LIMIT ?2",
        )?;
        let rows = statement.query_map(
            params![broadcast, i64::try_from(limit).unwrap_or(i64::MAX)],
            |row| {
                Ok(LoggedAction {
                    seq: row.get::<_, i64>(0)?.unsigned_abs(),
                    moderator: row.get(1)?,
                    action: row.get(2)?,
                    at_ms: row.get::<_, i64>(3)?.unsigned_abs(),
                })
            },
        )?;
        let mut actions = rows.collect::<Result<Vec<_>, _>>()?;
        actions.reverse();
        Ok(actions)
    }

    /// The broadcast's totals.
    pub fn totals(&self, broadcast: &str) -> Result<Totals, LedgerError> {
        let row: Option<(i64, Option<i64>)> = self
            .db()
            .query_row(
                "SELECT COUNT(*), SUM(amount) FROM gifts WHERE broadcast = ?1",
                params![broadcast],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        let (gifts, amount) = row.unwrap_or((0, None));
        Ok(Totals {
            gifts: gifts.unsigned_abs(),
            amount: amount.unwrap_or(0).unsigned_abs(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_is_recorded_once_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gifts.sqlite3");
        let ledger = Ledger::open(&path).unwrap();
        let first = ledger.record("b", b"g1", 1, 10).unwrap();
        assert!(first.new);
        let retry = ledger.record("b", b"g1", 1, 999).unwrap();
        assert_eq!(
            retry,
            Recorded {
                new: false,
                ..first.clone()
            },
            "a retry keeps the first record"
        );
        ledger.record("b", b"g2", 2, 5).unwrap();
        // The same client id in another broadcast is another gift.
        ledger.record("other", b"g1", 1, 7).unwrap();
        assert_eq!(ledger.totals("b").unwrap(), Totals { gifts: 2, amount: 15 });
        drop(ledger);

        let reopened = Ledger::open(&path).unwrap();
        assert_eq!(reopened.totals("b").unwrap(), Totals { gifts: 2, amount: 15 });
        assert!(!reopened.record("b", b"g1", 1, 10).unwrap().new);
        assert_eq!(reopened.totals("nobody").unwrap(), Totals::default());
    }

    #[test]
    fn moderation_actions_survive_reopening_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gifts.sqlite3");
        let ledger = Ledger::open(&path).unwrap();
        let a = ledger.record_action("b", "mod1", b"ban", 10).unwrap();
        let b = ledger.record_action("other", "mod1", b"x", 11).unwrap();
        let c = ledger.record_action("b", "mod2", b"slow", 12).unwrap();
        assert!(a < b && b < c);
        drop(ledger);
        let reopened = Ledger::open(&path).unwrap();
        let actions = reopened.actions("b", 100).unwrap();
        assert_eq!(
            actions
                .iter()
                .map(|a| (a.seq, a.moderator.as_str(), a.action.as_slice(), a.at_ms))
                .collect::<Vec<_>>(),
            [(a, "mod1", &b"ban"[..], 10), (c, "mod2", &b"slow"[..], 12)]
        );
        assert_eq!(reopened.actions("b", 1).unwrap().len(), 1, "the last one");
        assert_eq!(reopened.actions("b", 1).unwrap()[0].seq, c);
    }
}

//! Fleet health: a record per device of the tenant (its last report, its user, when it was seen,
//! whether it is connected), kept in memory for the admins' `fleet` requests and `/metrics`, and
//! written to `moat_devices` in the tenant's database in the background (a batch of what changed,
//! through the tenant's writer), so "last seen" survives restarts.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension};
use sqlite_ext::protocol::{DeviceRecord, DeviceReport};

use crate::error::Result;

/// The most devices a `fleet` answer lists (the most recently seen).
pub(crate) const FLEET_MAX: usize = 500;

const TABLE_SQL: &str = "CREATE TABLE IF NOT EXISTS moat_devices (
    client_id TEXT PRIMARY KEY NOT NULL,
    record    TEXT NOT NULL
) STRICT, WITHOUT ROWID";

/// A tenant's devices.
#[derive(Debug, Default)]
pub(crate) struct Devices {
    /// Boxed: a record is large and most of the table's slots are empty.
    map: Mutex<HashMap<String, Box<DeviceRecord>>>,
    /// Changed since the last write to the database.
    dirty: Mutex<HashSet<String>>,
}

impl Devices {
    /// The devices stored in the tenant's database (none connected yet).
    pub(crate) fn load(conn: &Connection) -> Result<Devices> {
        let exists = conn
            .query_row("SELECT 1 FROM sqlite_schema WHERE name = 'moat_devices'", [], |_| Ok(()))
            .optional()?
            .is_some();
        let mut map = HashMap::new();
        if exists {
            let mut stmt = conn.prepare("SELECT record FROM moat_devices")?;
            for json in stmt.query_map([], |r| r.get::<_, String>(0))? {
                if let Ok(mut record) = serde_json::from_str::<DeviceRecord>(&json?) {
                    record.connected = false;
                    map.insert(record.client_id.clone(), Box::new(record));
                }
            }
        }
        Ok(Devices { map: Mutex::new(map), dirty: Mutex::new(HashSet::new()) })
    }

    /// A device connected (`report` from its hello, if it sent one) or reported.
    pub(crate) fn seen(
        &self,
        client_id: &str,
        user: &str,
        role: &str,
        schema: Option<&str>,
        report: Option<&DeviceReport>,
        connected: bool,
    ) {
        let now = super::now_ms();
        let mut map = self.map.lock().expect("devices lock");
        let record = map.entry(client_id.to_owned()).or_insert_with(|| {
            Box::new(DeviceRecord {
                client_id: client_id.to_owned(),
                user: user.to_owned(),
                role: role.to_owned(),
                app_version: String::new(),
                platform: String::new(),
                schema: None,
                pending: 0,
                oldest_pending_ms: None,
                rejected: 0,
                conflicts: 0,
                last_error: None,
                connected,
                last_seen_ms: now,
            })
        });
        (record.user, record.role) = (user.to_owned(), role.to_owned());
        if let Some(s) = schema {
            record.schema = Some(s.to_owned());
        }
        if let Some(r) = report {
            record.app_version.clone_from(&r.app_version);
            record.platform.clone_from(&r.platform);
            (record.pending, record.oldest_pending_ms) = (r.pending, r.oldest_pending_ms);
            (record.rejected, record.conflicts) = (r.rejected, r.conflicts);
            record.last_error.clone_from(&r.last_error);
        }
        record.connected = connected;
        record.last_seen_ms = now;
        self.dirty.lock().expect("devices lock").insert(client_id.to_owned());
    }

    /// A device's session ended.
    pub(crate) fn gone(&self, client_id: &str) {
        if let Some(r) = self.map.lock().expect("devices lock").get_mut(client_id) {
            r.connected = false;
            r.last_seen_ms = super::now_ms();
            self.dirty.lock().expect("devices lock").insert(client_id.to_owned());
        }
    }

    /// The devices, most recently seen first (connected ones first among equals).
    pub(crate) fn list(&self) -> Vec<DeviceRecord> {
        let mut all: Vec<DeviceRecord> =
            self.map.lock().expect("devices lock").values().map(|r| DeviceRecord::clone(r)).collect();
        all.sort_by_key(|d| std::cmp::Reverse((d.connected, d.last_seen_ms)));
        all.truncate(FLEET_MAX);
        all
    }

    /// What changed since the last call, to write.
    pub(crate) fn take_dirty(&self) -> Vec<DeviceRecord> {
        let dirty: Vec<String> = self.dirty.lock().expect("devices lock").drain().collect();
        let map = self.map.lock().expect("devices lock");
        dirty.iter().filter_map(|id| map.get(id).map(|r| DeviceRecord::clone(r))).collect()
    }

    /// Figures for `/metrics`: connected devices, writes pending on them, the oldest pending write's
    /// age (ms), devices whose last report carries an error.
    pub(crate) fn figures(&self) -> (u64, u64, u64, u64) {
        let map = self.map.lock().expect("devices lock");
        map.values().filter(|d| d.connected).fold((0, 0, 0, 0), |(n, p, o, e), d| {
            (
                n + 1,
                p + d.pending,
                o.max(d.oldest_pending_ms.unwrap_or(0)),
                e + u64::from(d.last_error.is_some()),
            )
        })
    }
}

/// Writes device records (inside the writer's transaction).
pub(crate) fn save(conn: &Connection, records: &[DeviceRecord]) -> Result<()> {
    conn.execute_batch(TABLE_SQL)?;
    let mut stmt = conn.prepare_cached(
        "INSERT INTO moat_devices (client_id, record) VALUES (?1, ?2) \
         ON CONFLICT (client_id) DO UPDATE SET record = excluded.record",
    )?;
    for r in records {
        let json = serde_json::to_string(r).map_err(|e| crate::error::Error::Internal(e.to_string()))?;
        stmt.execute((&r.client_id, json))?;
    }
    Ok(())
}

//! Fleet health: a record per device of the tenant (its last report, its user, when it was seen,
//! whether it is connected), kept in memory for the admins' `fleet` requests and `/metrics`, and
//! written to `moat_devices` in the tenant's database in the background (a batch of what changed,
//! through the tenant's writer), so "last seen" survives restarts.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

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
    registry: Mutex<Registry>,
}

/// The records, by client id, and what changed since the last write to the database.
#[derive(Debug, Default)]
struct Registry {
    /// Boxed: most of the table's slots are empty.
    devices: HashMap<Arc<str>, Box<Device>>,
    dirty: HashSet<Arc<str>>,
    /// The texts many devices share (users, roles, app versions, platforms, schema fingerprints),
    /// held once; a record names them by their place here ([`Text`]).
    texts: Vec<Arc<str>>,
    places: HashMap<Arc<str>, Text>,
}

/// A text's place in [`Registry::texts`]: 4 bytes in a record, where an `Arc<str>` is 16.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Text(u32);

/// No schema fingerprint (a device that never said one).
const NO_SCHEMA: Text = Text(u32::MAX);

impl Registry {
    fn text(&mut self, s: &str) -> Text {
        if let Some(&t) = self.places.get(s) {
            return t;
        }
        let t = Text(u32::try_from(self.texts.len()).expect("fewer than 4G distinct texts"));
        let shared: Arc<str> = Arc::from(s);
        self.texts.push(Arc::clone(&shared));
        self.places.insert(shared, t);
        t
    }

    fn get(&self, t: Text) -> &Arc<str> {
        &self.texts[t.0 as usize]
    }

    fn device(&mut self, client_id: &str) -> Option<(Arc<str>, &mut Device)> {
        let id = Arc::clone(self.devices.get_key_value(client_id)?.0);
        Some((id, self.devices.get_mut(client_id)?))
    }

    fn record(&self, client_id: &str, d: &Device) -> DeviceRecord {
        DeviceRecord {
            client_id: client_id.to_owned(),
            user: self.get(d.user).to_string(),
            role: self.get(d.role).to_string(),
            app_version: self.get(d.app_version).to_string(),
            platform: self.get(d.platform).to_string(),
            schema: (d.schema != NO_SCHEMA).then(|| self.get(d.schema).to_string()),
            pending: d.pending,
            oldest_pending_ms: d.oldest_pending_ms,
            rejected: d.rejected,
            conflicts: d.conflicts,
            last_error: d.last_error.as_deref().map(str::to_owned),
            connected: d.connected,
            last_seen_ms: d.last_seen_ms,
        }
    }
}

/// A device's record as the registry holds it (a [`DeviceRecord`] whose texts devices share are
/// places in the registry's table): 88 bytes and its id, where a `DeviceRecord` is ~220 bytes and
/// five or six texts of its own.
#[derive(Debug)]
struct Device {
    user: Text,
    role: Text,
    app_version: Text,
    platform: Text,
    /// [`NO_SCHEMA`] when the device never said one.
    schema: Text,
    pending: u64,
    oldest_pending_ms: Option<u64>,
    rejected: u64,
    conflicts: u64,
    last_error: Option<Box<str>>,
    connected: bool,
    last_seen_ms: u64,
}

/// The texts of a device's record that its session holds too: one copy, the registry's.
pub(crate) struct Shared {
    pub(crate) client_id: Arc<str>,
    pub(crate) user: Arc<str>,
    pub(crate) role: Arc<str>,
}

impl Devices {
    /// The devices stored in the tenant's database (none connected yet).
    pub(crate) fn load(conn: &Connection) -> Result<Devices> {
        let exists = conn
            .query_row("SELECT 1 FROM sqlite_schema WHERE name = 'moat_devices'", [], |_| Ok(()))
            .optional()?
            .is_some();
        let mut reg = Registry::default();
        if exists {
            let mut stmt = conn.prepare("SELECT record FROM moat_devices")?;
            for json in stmt.query_map([], |r| r.get::<_, String>(0))? {
                if let Ok(r) = serde_json::from_str::<DeviceRecord>(&json?) {
                    let device = Device {
                        user: reg.text(&r.user),
                        role: reg.text(&r.role),
                        app_version: reg.text(&r.app_version),
                        platform: reg.text(&r.platform),
                        schema: r.schema.as_deref().map_or(NO_SCHEMA, |s| reg.text(s)),
                        pending: r.pending,
                        oldest_pending_ms: r.oldest_pending_ms,
                        rejected: r.rejected,
                        conflicts: r.conflicts,
                        last_error: r.last_error.map(String::into_boxed_str),
                        connected: false,
                        last_seen_ms: r.last_seen_ms,
                    };
                    reg.devices.insert(Arc::from(r.client_id), Box::new(device));
                }
            }
        }
        Ok(Devices { registry: Mutex::new(reg) })
    }

    /// A device connected (`report` from its hello, if it sent one) or reported. Returns the
    /// registry's copies of its id, user and role, for a session to hold rather than its own.
    pub(crate) fn seen(
        &self,
        client_id: &str,
        user: &str,
        role: &str,
        schema: Option<&str>,
        report: Option<&DeviceReport>,
        connected: bool,
    ) -> Shared {
        let now = super::now_ms();
        let mut reg = self.registry.lock().expect("devices lock");
        let (user, role) = (reg.text(user), reg.text(role));
        let schema = schema.map(|s| reg.text(s));
        let report = report.map(|r| (r, reg.text(&r.app_version), reg.text(&r.platform)));
        if reg.device(client_id).is_none() {
            let empty = reg.text("");
            let device = Device {
                user,
                role,
                app_version: empty,
                platform: empty,
                schema: NO_SCHEMA,
                pending: 0,
                oldest_pending_ms: None,
                rejected: 0,
                conflicts: 0,
                last_error: None,
                connected,
                last_seen_ms: now,
            };
            reg.devices.insert(Arc::from(client_id), Box::new(device));
        }
        let (id, record) = reg.device(client_id).expect("inserted above");
        (record.user, record.role) = (user, role);
        if let Some(schema) = schema {
            record.schema = schema;
        }
        if let Some((r, app_version, platform)) = report {
            (record.app_version, record.platform) = (app_version, platform);
            (record.pending, record.oldest_pending_ms) = (r.pending, r.oldest_pending_ms);
            (record.rejected, record.conflicts) = (r.rejected, r.conflicts);
            record.last_error = r.last_error.as_deref().map(Box::from);
        }
        record.connected = connected;
        record.last_seen_ms = now;
        reg.dirty.insert(Arc::clone(&id));
        Shared { client_id: id, user: Arc::clone(reg.get(user)), role: Arc::clone(reg.get(role)) }
    }

    /// A device's session ended.
    pub(crate) fn gone(&self, client_id: &str) {
        let mut reg = self.registry.lock().expect("devices lock");
        if let Some((id, r)) = reg.device(client_id) {
            r.connected = false;
            r.last_seen_ms = super::now_ms();
            reg.dirty.insert(id);
        }
    }

    /// The devices, most recently seen first (connected ones first among equals).
    pub(crate) fn list(&self) -> Vec<DeviceRecord> {
        let reg = self.registry.lock().expect("devices lock");
        let mut all: Vec<(&Arc<str>, &Device)> = reg.devices.iter().map(|(id, d)| (id, &**d)).collect();
        all.sort_by_key(|(_, d)| std::cmp::Reverse((d.connected, d.last_seen_ms)));
        all.into_iter().take(FLEET_MAX).map(|(id, d)| reg.record(id, d)).collect()
    }

    /// What changed since the last call, to write.
    pub(crate) fn take_dirty(&self) -> Vec<DeviceRecord> {
        let mut reg = self.registry.lock().expect("devices lock");
        let dirty = std::mem::take(&mut reg.dirty);
        dirty.iter().filter_map(|id| reg.devices.get(id).map(|d| reg.record(id, d))).collect()
    }

    /// Figures for `/metrics`: connected devices, writes pending on them, the oldest pending write's
    /// age (ms), devices whose last report carries an error.
    pub(crate) fn figures(&self) -> (u64, u64, u64, u64) {
        let reg = self.registry.lock().expect("devices lock");
        reg.devices.values().filter(|d| d.connected).fold((0, 0, 0, 0), |(n, p, o, e), d| {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_names_the_texts_devices_share_and_a_session_holds_the_registrys_copies() {
        let devices = Devices::default();
        let report = DeviceReport {
            app_version: "1.2.0".into(),
            platform: "ios".into(),
            pending: 3,
            oldest_pending_ms: Some(40),
            rejected: 1,
            conflicts: 0,
            last_error: Some("disk full".into()),
        };
        let a = devices.seen("dev-a", "u-1", "technician", Some("f1"), Some(&report), true);
        let b = devices.seen("dev-b", "u-1", "technician", None, None, true);
        assert!(Arc::ptr_eq(&a.user, &b.user) && Arc::ptr_eq(&a.role, &b.role), "one copy per text");
        assert_eq!((&*a.client_id, &*b.client_id), ("dev-a", "dev-b"));
        devices.gone("dev-b");
        let list = devices.list();
        let a = list.iter().find(|r| r.client_id == "dev-a").unwrap();
        assert_eq!(
            (a.user.as_str(), a.role.as_str(), a.schema.as_deref()),
            ("u-1", "technician", Some("f1"))
        );
        assert_eq!((a.app_version.as_str(), a.platform.as_str(), a.pending), ("1.2.0", "ios", 3));
        assert_eq!((a.last_error.as_deref(), a.connected), (Some("disk full"), true));
        let b = list.iter().find(|r| r.client_id == "dev-b").unwrap();
        assert_eq!((b.schema.as_deref(), b.app_version.as_str(), b.connected), (None, "", false));
        assert_eq!(devices.take_dirty().len(), 2);
        // A record per device the tenant ever saw stays in memory: kept small.
        assert!(std::mem::size_of::<Device>() <= 88, "{} bytes", std::mem::size_of::<Device>());
    }
}

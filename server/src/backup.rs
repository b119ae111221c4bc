//! Backups and restores of tenant databases.
//!
//! A backup is a folder `<into>/<UTC time>/` with one consistent copy per tenant (`VACUUM INTO`,
//! which reads one snapshot of the database: safe while the server writes, from the server or from
//! another process), checked with `PRAGMA quick_check`, and a `manifest.json` naming each copy's
//! version and SHA-256. It is written as `<stamp>.partial` and renamed when complete, so a folder
//! without the suffix is always a whole backup. Scheduled backups keep the newest `keep`.
//!
//! A restore puts copies back (the server stopped: it holds the data directory's lock). Clients
//! may have seen versions after the backup's: their history is gone with the restore. So the
//! restored database's version counter jumps ahead by [`RESTORE_GAP`] and the skipped range is
//! recorded (`moat_restores`): a client whose cursor falls in it gets a fresh snapshot instead of a
//! catch-up (see `cursor_lost`), then replays its pending writes; those the backup already holds
//! are recognised by their mutation ids and not applied twice.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::tenants;

/// How far a restored tenant's version counter jumps: past any version a client could have seen
/// before the restore (four billion commits).
pub const RESTORE_GAP: i64 = 1 << 32;

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// When it was taken, milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// The server version that took it.
    pub moat_version: String,
    /// One entry per tenant copy.
    pub tenants: Vec<Copy>,
}

/// One tenant's copy in a backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Copy {
    /// The tenant.
    pub name: String,
    /// The file, relative to the backup's folder.
    pub file: String,
    /// The tenant's version (its newest commit) in the copy.
    pub version: i64,
    /// The copy's size.
    pub bytes: u64,
    /// The copy's SHA-256, hex.
    pub sha256: String,
}

/// Takes a backup of every tenant (or `only` one) of `data` into a new folder under `into`;
/// returns the folder and its manifest. `progress` hears about each tenant as it is copied.
pub fn backup(
    data: &Path,
    into: &Path,
    only: Option<&str>,
    mut progress: impl FnMut(&str),
) -> Result<(PathBuf, Manifest)> {
    let names = match only {
        Some(name) => {
            tenants::check_name(name)?;
            if !tenants::exists(&tenants::open_platform(data)?, name)? {
                return Err(Error::Config(format!("there is no tenant {name}")));
            }
            vec![name.to_owned()]
        }
        None => tenants::registered(&tenants::open_platform(data)?)?,
    };
    let created_ms = now_ms();
    let mut stamp = utc_stamp(created_ms / 1000);
    let mut n = 1;
    while into.join(&stamp).exists() || into.join(format!("{stamp}.partial")).exists() {
        n += 1;
        stamp = format!("{}-{n}", utc_stamp(created_ms / 1000));
    }
    let partial = into.join(format!("{stamp}.partial"));
    let io = |p: &Path, e: std::io::Error| Error::Config(format!("{}: {e}", p.display()));
    std::fs::create_dir_all(partial.join("tenants")).map_err(|e| io(&partial, e))?;
    let mut copies = Vec::new();
    for name in names {
        progress(&name);
        let file = format!("tenants/{name}.db");
        let to = partial.join(&file);
        let source = crate::store::open_conn(&tenants::tenant_path(data, &name))?;
        source.execute("VACUUM INTO ?1", [to.to_string_lossy()])?;
        drop(source);
        let copy = Connection::open_with_flags(&to, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let check: String = copy.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        if check != "ok" {
            return Err(Error::Internal(format!("the copy of {name} fails its check: {check}")));
        }
        let version = crate::store::current_version(&copy)?;
        drop(copy);
        let (bytes, sha256) = digest(&to)?;
        copies.push(Copy { name, file, version, bytes, sha256 });
    }
    let manifest = Manifest { created_ms, moat_version: env!("CARGO_PKG_VERSION").into(), tenants: copies };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Internal(e.to_string()))?;
    let path = partial.join("manifest.json");
    std::fs::write(&path, json).map_err(|e| io(&path, e))?;
    sync_dir(&partial.join("tenants"));
    sync_dir(&partial);
    let done = into.join(&stamp);
    std::fs::rename(&partial, &done).map_err(|e| io(&done, e))?;
    sync_dir(into);
    Ok((done, manifest))
}

/// Removes the oldest whole backups under `into` beyond the newest `keep` (and leftovers of
/// interrupted ones, `.partial`, but not one being written now: only those older than an hour).
pub fn prune(into: &Path, keep: usize) -> Result<Vec<PathBuf>> {
    let mut whole = list(into)?;
    let mut removed = Vec::new();
    let old = whole.len().saturating_sub(keep);
    for (dir, _) in whole.drain(..old) {
        std::fs::remove_dir_all(&dir).map_err(|e| Error::Config(format!("{}: {e}", dir.display())))?;
        removed.push(dir);
    }
    if let Ok(entries) = std::fs::read_dir(into) {
        for e in entries.flatten() {
            let p = e.path();
            let stale = e.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
            if p.extension().is_some_and(|x| x == "partial") && stale.is_some_and(|s| s.as_secs() > 3600) {
                let _ = std::fs::remove_dir_all(&p);
                removed.push(p);
            }
        }
    }
    Ok(removed)
}

/// The whole backups under `into`, oldest first, with their manifests.
pub fn list(into: &Path) -> Result<Vec<(PathBuf, Manifest)>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(into) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::Config(format!("{}: {e}", into.display()))),
    };
    for e in entries.flatten() {
        let dir = e.path();
        if dir.extension().is_some_and(|x| x == "partial") {
            continue;
        }
        if let Ok(m) = read_manifest(&dir) {
            out.push((dir, m));
        }
    }
    out.sort_by_key(|(dir, m)| (m.created_ms, dir.clone()));
    Ok(out)
}

fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join("manifest.json");
    let bytes = std::fs::read(&path).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
}

/// Puts the copies of backup `from` (every tenant in it, or `only` one) into `data`, replacing
/// the tenants' databases and registering tenants the data directory does not have. The server
/// must be stopped. Returns one line per tenant.
pub fn restore(from: &Path, data: &Path, only: Option<&str>) -> Result<Vec<String>> {
    let manifest = read_manifest(from)?;
    let copies: Vec<&Copy> = manifest.tenants.iter().filter(|c| only.is_none_or(|o| o == c.name)).collect();
    if let Some(o) = only
        && copies.is_empty()
    {
        return Err(Error::Config(format!("{} holds no copy of {o}", from.display())));
    }
    std::fs::create_dir_all(data.join("tenants"))
        .map_err(|e| Error::Config(format!("{}: {e}", data.display())))?;
    let _lock = crate::migrate::writer_lock(&tenants::platform_path(data))?;
    // Every copy is checked before any is put back.
    for c in &copies {
        tenants::check_name(&c.name)?;
        let (bytes, sha) = digest(&from.join(&c.file))?;
        if (bytes, sha.as_str()) != (c.bytes, c.sha256.as_str()) {
            return Err(Error::Config(format!("the copy of {} in {} is damaged", c.name, from.display())));
        }
    }
    let platform = tenants::open_platform(data)?;
    let mut lines = Vec::new();
    for c in copies {
        let path = tenants::tenant_path(data, &c.name);
        let tmp = PathBuf::from(format!("{}.restoring", path.display()));
        std::fs::copy(from.join(&c.file), &tmp)
            .map_err(|e| Error::Config(format!("{}: {e}", tmp.display())))?;
        {
            let mut conn = Connection::open(&tmp)?;
            mark_restored(&mut conn, c.version)?;
        }
        for suffix in ["-wal", "-shm"] {
            let p = PathBuf::from(format!("{}{suffix}", path.display()));
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::Config(format!("{}: {e}", p.display()))),
            }
        }
        std::fs::rename(&tmp, &path).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        if !tenants::exists(&platform, &c.name)? {
            tenants::register(&platform, &c.name)?;
        }
        lines.push(format!(
            "{}: restored to version {} (clients ahead of it take a fresh snapshot)",
            c.name, c.version
        ));
    }
    if let Some(dir) = tenants::tenant_path(data, "x").parent() {
        sync_dir(dir);
    }
    Ok(lines)
}

/// Records that versions after `restored_to` are a lost history and moves the counter past them.
fn mark_restored(conn: &mut Connection, restored_to: i64) -> Result<()> {
    let tx = conn.transaction()?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS moat_restores (
            restored_to INTEGER NOT NULL,
            resumed_at  INTEGER NOT NULL,
            at_ms       INTEGER NOT NULL
        ) STRICT",
    )?;
    let resumed_at = restored_to + RESTORE_GAP;
    tx.execute(
        "INSERT INTO moat_restores (restored_to, resumed_at, at_ms) VALUES (?1, ?2, ?3)",
        (restored_to, resumed_at, now_ms() as i64),
    )?;
    tx.execute(
        "INSERT INTO moat_meta (key, value) VALUES ('version', ?1) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [resumed_at],
    )?;
    tx.commit()?;
    Ok(())
}

/// True when `cursor` is a version of a history a restore undid: its client must start again from
/// a snapshot.
pub(crate) fn cursor_lost(conn: &Connection, cursor: i64) -> Result<bool> {
    let has_table: bool = conn
        .prepare_cached("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'moat_restores'")?
        .query_row([], |_| Ok(()))
        .optional()?
        .is_some();
    if !has_table {
        return Ok(false);
    }
    Ok(conn
        .prepare_cached("SELECT 1 FROM moat_restores WHERE ?1 > restored_to AND ?1 <= resumed_at")?
        .query_row([cursor], |_| Ok(()))
        .optional()?
        .is_some())
}

fn digest(path: &Path) -> Result<(u64, String)> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        hasher.update(&buf[..n]);
    }
    let hex = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((bytes, hex))
}

/// Makes a folder's entries durable (a rename is only durable once its folder is synced).
fn sync_dir(dir: &Path) {
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `20261202T154501Z` for a time in seconds since the Unix epoch (UTC; sorts by time).
fn utc_stamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_utc_and_sort_by_time() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_stamp(1_796_226_301), "20261202T154501Z");
        assert_eq!(utc_stamp(951_782_400), "20000229T000000Z");
    }
}

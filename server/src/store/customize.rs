//! Publishing an admin's customization: in the tenant's writer, between two batches, as one
//! transaction. The draft is planned with the core's [`customize::plan`] (the check the app ran before
//! sending it), the storage it needs is made (a new object type's table, a new field's column; a
//! removed field's column dropped once the admin confirmed the loss), recorded as a migration of scope
//! `customize`, and the metadata rows are written through the core's capture, so the change reaches
//! clients like any write. Each publish is a version in `moat_customizations`, with the whole metadata
//! it made, so any version can be published again (a rollback).
//!
//! What clients see: a publish that needs no storage is a diff of metadata rows, live. One that adds
//! storage swaps the tenant's schema: its sessions close (1012) and reconnect, the welcome brings the
//! new schema, and catch-up brings the metadata (earlier log entries of a widened table are refitted
//! to the new schema, so no client re-downloads anything). One that drops storage empties the log like
//! a migration: clients take a fresh copy.

use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use sqlite_ext::Schema;
use sqlite_ext::protocol::{CustomizationVersion, CustomizeAnswer, CustomizeRequest};
use sqlite_ext::ui::customize::{self, Customization};

use super::Store;
use super::log::{current_version, record, refit, route_changes, set_version};
use crate::error::{Error, Result};

const TABLE_SQL: &str = "CREATE TABLE IF NOT EXISTS moat_customizations (
    version   INTEGER PRIMARY KEY,
    user_id   TEXT NOT NULL,
    at_ms     INTEGER NOT NULL,
    changes   TEXT NOT NULL,
    snapshot  TEXT NOT NULL
) STRICT";

/// How many versions a `versions` answer lists.
const VERSIONS_LISTED: i64 = 50;

/// A publish or a rollback, and who asks.
#[derive(Debug)]
pub(crate) struct Publish {
    pub(crate) request: CustomizeRequest,
    /// The admin's user id.
    pub(crate) user: String,
    /// The routing columns of the admin's rows, with their values (new metadata rows carry them).
    pub(crate) route: Vec<(String, String)>,
}

fn refused(code: &str, reason: impl Into<String>, lost: Vec<String>) -> CustomizeAnswer {
    CustomizeAnswer::Refused { code: code.to_owned(), reason: reason.into(), lost }
}

/// The published versions, newest first (none before the first publish).
pub(crate) fn versions(conn: &Connection) -> Result<Vec<CustomizationVersion>> {
    let exists: Option<String> = conn
        .query_row("SELECT name FROM sqlite_master WHERE name = 'moat_customizations'", [], |r| r.get(0))
        .optional()?;
    if exists.is_none() {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare(
        "SELECT version, user_id, at_ms, changes FROM moat_customizations ORDER BY version DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map([VERSIONS_LISTED], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, String>(3)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (version, user, at_ms, changes) = row?;
        let changes = serde_json::from_str(&changes)
            .map_err(|e| Error::Internal(format!("customization {version} is unreadable: {e}")))?;
        out.push(CustomizationVersion { version, user, at_ms, changes });
    }
    Ok(out)
}

/// Publishes in the writer; nothing is changed unless the answer is `published`.
pub(super) fn publish(store: &Store, conn: &mut Connection, p: Publish) -> Result<CustomizeAnswer> {
    let models = &store.models;
    let model = models.get();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(TABLE_SQL)?;
    let (next, destroy, rollback_to) = match p.request {
        CustomizeRequest::Publish { customization, destroy } => (customization, destroy, None),
        CustomizeRequest::Rollback { version, destroy } => {
            let snapshot: Option<String> = tx
                .query_row("SELECT snapshot FROM moat_customizations WHERE version = ?1", [version], |r| {
                    r.get(0)
                })
                .optional()?;
            let Some(snapshot) = snapshot else {
                return Ok(refused("not_found", format!("There is no version {version}"), Vec::new()));
            };
            let next: Customization = serde_json::from_str(&snapshot)
                .map_err(|e| Error::Internal(format!("customization {version} is unreadable: {e}")))?;
            (next, destroy, Some(version))
        }
        CustomizeRequest::Versions {} => {
            return Ok(refused("invalid", "listing versions is a read", Vec::new()));
        }
    };
    let current = customize::read(&tx)?;
    if rollback_to.is_none() && next.base.is_some() && next.base != current.base {
        let reason = "Someone published changes since you started; discard your changes to see theirs, then \
                      make yours again";
        return Ok(refused("stale", reason, Vec::new()));
    }
    let route_cols: Vec<String> = model.rules.route_columns().map(str::to_owned).collect();
    let plan = customize::plan(&tx, &model.schema, &route_cols, &next)?;
    if !plan.problems.is_empty() {
        return Ok(refused("invalid", plan.problems.join("\n"), Vec::new()));
    }
    if plan.changes.is_empty() {
        return Ok(refused("unchanged", "Nothing differs from what is published", Vec::new()));
    }
    if !plan.lost.is_empty() && !destroy {
        let reason = "Publishing this deletes data for good; confirm to go on";
        return Ok(refused("destructive", reason, plan.lost));
    }
    let newest: Option<i64> =
        tx.query_row("SELECT max(version) FROM moat_customizations", [], |r| r.get(0))?;
    if newest.is_none() {
        // The metadata as it was before the first publish is version 1, so it can be gone back to.
        let before =
            serde_json::to_string(&Customization { base: None, ..current }).expect("metadata serialises");
        let said =
            serde_json::to_string(&["The metadata before the first customization"]).expect("serialises");
        tx.execute(
            "INSERT INTO moat_customizations (version, user_id, at_ms, changes, snapshot) VALUES (1, '', ?1, ?2, ?3)",
            rusqlite::params![super::now_ms() as i64, said, before],
        )?;
    }
    // Storage first: the metadata rows then name columns that exist.
    let mut swapped = None;
    let mut schema = Arc::clone(&model.schema);
    if !plan.ddl.is_empty() {
        let sql: String = plan.ddl.iter().map(|s| format!("{s};\n")).collect();
        let made = tx.execute_batch(&sql);
        if let Err(e) = made {
            let why = format!("The storage could not be changed: {e}");
            return Ok(refused("invalid", why, Vec::new()));
        }
        let current = crate::migrate::effective_schema(&tx, &models.base)?;
        let target_sql = crate::migrate::effective_sql(current.sql(), std::iter::once(sql.as_str()));
        let built = Schema::from_sql(&target_sql)
            .map_err(|e| Error::Invalid(format!("the customized schema: {e}")))
            .and_then(|s| models.build(s));
        let built = match built {
            Ok(m) => m,
            // The sync rules name what the draft removes, for example.
            Err(e) => return Ok(refused("invalid", e.reason(), Vec::new())),
        };
        crate::migrate::record_customization(&tx, &sql, &target_sql)?;
        schema = Arc::clone(&built.schema);
        swapped = Some(built);
    }
    let rules = swapped.as_ref().map(|m| Arc::clone(&m.rules)).unwrap_or_else(|| Arc::clone(&model.rules));
    let ((), diff) =
        sqlite_ext::capture(&tx, &schema, |c| customize::write(c, &next, &p.route).map_err(Error::from))?;
    if let Err(e) = sqlite_ext::ui::check_metadata(&tx, &schema, &diff) {
        return Ok(refused("invalid", e.for_user(), Vec::new()));
    }
    let mut version = current_version(&tx)?;
    let mut entries = Vec::new();
    if plan.drops {
        // Changes logged before a column or table went cannot be sent again: every client takes a
        // fresh copy, as after a migration.
        version += 1;
        tx.execute("DELETE FROM moat_log", [])?;
    } else {
        refit(&tx, &schema, &plan.widened)?;
        let routed = route_changes(&tx, &schema, &rules, diff)?;
        if !routed.is_empty() {
            version += 1;
            record(&tx, version, &p.user, routed, &mut entries)?;
        }
    }
    set_version(&tx, version, store.config.log_retention)?;
    let mut changes = plan.changes;
    if let Some(v) = rollback_to {
        changes.insert(0, format!("Rolled back to version {v}"));
    }
    let published: i64 =
        tx.query_row("SELECT max(version) + 1 FROM moat_customizations", [], |r| r.get(0))?;
    tx.execute(
        "INSERT INTO moat_customizations (version, user_id, at_ms, changes, snapshot) VALUES (?1, ?2, ?3, ?4, ?5)",
        rusqlite::params![
            published,
            p.user,
            super::now_ms() as i64,
            serde_json::to_string(&changes).expect("serialises"),
            serde_json::to_string(&Customization { base: None, ..next }).expect("metadata serialises"),
        ],
    )?;
    tx.commit()?;
    tracing::info!(tenant = %store.tenant, version = published, user = %p.user, "customization published");
    match swapped {
        Some(m) => {
            models.set(m);
            store.hub.reset();
        }
        None => store.hub.publish(&model.rules, &entries, &store.metrics),
    }
    Ok(CustomizeAnswer::Published { version: published, changes })
}

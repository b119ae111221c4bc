//! The initial sync after hello: a client whose cursor the change log still covers gets the entries
//! after it (catch-up); any other gets a fresh snapshot of its channel, in chunks with progress.

use std::sync::Arc;

use rusqlite::TransactionBehavior;
use serde_json::value::RawValue;
use sqlite_ext::DiffWriter;
use tokio::sync::mpsc;

use crate::connection::{Conn, End};
use crate::hub::diff_frame;
use crate::protocol::{DiffJson, ServerMsg, close};
use crate::store::{log_after, log_bounds};

const CATCH_UP_BATCH: usize = 512;

pub(crate) async fn initial(conn: &mut Conn, cursor: Option<i64>) -> Result<(), End> {
    let store = Arc::clone(&conn.store);
    let (newest, oldest, lost) = store
        .read(move |c| {
            let (newest, oldest) = log_bounds(c)?;
            // A cursor from a history a restore undid: its client has rows the server no longer has.
            let lost = match cursor {
                Some(cursor) => crate::backup::cursor_lost(c, cursor)?,
                None => false,
            };
            Ok((newest, oldest, lost))
        })
        .await
        .map_err(storage)?;
    match cursor {
        Some(c) if c <= newest && c + 1 >= oldest && !lost => {
            conn.state.metrics.catch_ups.inc();
            catch_up(conn, c).await?
        }
        _ => {
            conn.state.metrics.snapshots.inc();
            snapshot(conn).await?
        }
    }
    let channel = conn.profile.channel.clone();
    let version = conn.sent;
    conn.send(&ServerMsg::Synced { channel: channel.into(), version }).await
}

pub(crate) fn storage(e: crate::error::Error) -> End {
    tracing::error!(error = %e, "reading for a client failed");
    End::Close(close::INTERNAL, "the server could not read its database".into())
}

async fn catch_up(conn: &mut Conn, cursor: i64) -> Result<(), End> {
    conn.sent = cursor;
    loop {
        let from = conn.sent;
        let entries = conn.store.read(move |c| log_after(c, from, CATCH_UP_BATCH)).await.map_err(storage)?;
        if entries.is_empty() {
            return Ok(());
        }
        for entry in entries {
            if let Some(diff) = entry.view(&conn.model.rules, &conn.profile) {
                conn.send_text(diff_frame(&conn.profile.channel, entry.version, &diff)).await?;
            }
            conn.sent = entry.version;
        }
    }
}

enum Part {
    Begin(u64),
    Chunk(u64, String),
    End(i64),
}

async fn snapshot(conn: &mut Conn) -> Result<(), End> {
    let (tx, mut rx) = mpsc::channel::<Part>(2);
    let (schema, rules, profile) =
        (Arc::clone(&conn.model.schema), Arc::clone(&conn.model.rules), conn.profile.clone());
    let chunk_rows = conn.state.limits.snapshot_chunk_rows.max(1);
    let chunk_bytes = conn.state.limits.snapshot_chunk_bytes;
    // The reader streams chunks from one read transaction, so the snapshot is consistent as of its
    // version; the channel is bounded, so a slow client holds two chunks in memory, not the table.
    let store = Arc::clone(&conn.store);
    let reader = tokio::spawn(async move {
        store
            .read(move |c| {
                let t = c.transaction_with_behavior(TransactionBehavior::Deferred)?;
                let (version, _) = log_bounds(&t)?;
                let filter = rules.route_filter(&profile);
                let filter: Vec<(&str, &sqlite_ext::Value)> = filter.iter().map(|(k, v)| (k, *v)).collect();
                // Smallest tables first: the metadata and layouts (and the small tables a page looks
                // up) arrive before the big ones, so a first sync can draw the app from its first
                // chunks.
                let mut tables = Vec::new();
                for table in schema.tables() {
                    tables.push((table.count(&t, &filter)? as u64, table));
                }
                tables.sort_by_key(|(n, _)| *n);
                let total = tables.iter().map(|(n, _)| n).sum();
                let gone = || crate::error::Error::Unavailable("client went away".into());
                tx.blocking_send(Part::Begin(total)).map_err(|_| gone())?;
                let mut done = 0u64;
                // A chunk is written as it fills, `{"changes":[...]}` as `Diff` serialises, and ends
                // at `chunk_rows` rows or past `chunk_bytes` bytes, whichever comes first.
                let mut chunk = DiffWriter::default();
                let route: Vec<sqlite_ext::Value> = profile.route.clone();
                for (_, table) in tables {
                    table.scan(&t, &filter, |row| -> crate::error::Result<()> {
                        if let Some(change) = rules.view(&profile, &table.insert_change(row), &route) {
                            chunk.push(&change);
                        }
                        if chunk.changes() >= chunk_rows || chunk.len() >= chunk_bytes {
                            done += chunk.changes() as u64;
                            let json = std::mem::take(&mut chunk).finish();
                            tx.blocking_send(Part::Chunk(done, json)).map_err(|_| gone())?;
                        }
                        Ok(())
                    })?;
                }
                if !chunk.is_empty() {
                    done += chunk.changes() as u64;
                    tx.blocking_send(Part::Chunk(done, chunk.finish())).map_err(|_| gone())?;
                }
                tx.blocking_send(Part::End(version)).map_err(|_| gone())?;
                Ok(())
            })
            .await
    });
    let channel = conn.profile.channel.clone();
    let mut rows = 0;
    while let Some(part) = rx.recv().await {
        match part {
            Part::Begin(n) => {
                rows = n;
                conn.send(&ServerMsg::SnapshotBegin { channel: channel.as_str().into(), rows }).await?;
            }
            Part::Chunk(rows_done, json) => {
                let diff = RawValue::from_string(json).expect("a diff's JSON is valid JSON");
                conn.send(&ServerMsg::Snapshot {
                    channel: channel.as_str().into(),
                    rows_done,
                    rows,
                    diff: DiffJson::Encoded(&diff),
                })
                .await?;
            }
            Part::End(version) => {
                conn.send(&ServerMsg::SnapshotEnd { channel: channel.as_str().into(), version }).await?;
                conn.sent = version;
            }
        }
    }
    match reader.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(storage(e)),
        Err(_) => Err(End::Close(close::INTERNAL, "snapshot failed".into())),
    }
}

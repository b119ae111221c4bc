//! The initial sync after hello: a client whose cursor the change log still covers gets the entries
//! after it (catch-up); any other gets a fresh snapshot of its channel, in chunks with progress.
//!
//! It is computed where the tenant's database is: by the session's own node when it owns the
//! tenant, else by the owner for it (`crate::cluster`), the frames relayed to the socket as they
//! come. Either way they go out through an [`Out`].

use std::sync::Arc;

use rusqlite::TransactionBehavior;
use serde_json::value::RawValue;
use sqlite_ext::{DiffWriter, RowsWriter};
use tokio::sync::mpsc;

use crate::cluster::Backend;
use crate::config::Limits;
use crate::connection::{Conn, End};
use crate::hub::diff_frame;
use crate::metrics::Metrics;
use crate::model::Model;
use crate::protocol::{DiffJson, ServerMsg, close};
use crate::rules::Profile;
use crate::store::{Store, log_after, log_bounds};

/// Where an initial sync's frames go, in order: a socket, or the node that holds it.
pub(crate) trait Out: Send {
    fn text(&mut self, text: String) -> impl Future<Output = Result<(), End>> + Send;
    /// Sends what is held back (a relay batches frames); called once at the end.
    fn flush(&mut self) -> impl Future<Output = Result<(), End>> + Send {
        async { Ok(()) }
    }
}

/// What one initial sync reads: the tenant's database, the session's model and profile.
#[derive(Clone)]
pub(crate) struct Job {
    pub(crate) store: Arc<Store>,
    pub(crate) model: Arc<Model>,
    pub(crate) profile: Profile,
    pub(crate) limits: Arc<Limits>,
    pub(crate) metrics: Arc<Metrics>,
    /// Snapshot chunks as `snapshot_rows` (the client accepts them), else as `snapshot` diffs.
    pub(crate) rows: bool,
}

const CATCH_UP_BATCH: usize = 512;

/// The session's initial sync: read here when this node holds the tenant, else run by its owner and
/// relayed frame by frame. `rows`: the client takes `snapshot_rows`. Returns the channel version
/// the client has after it.
pub(crate) async fn start(conn: &mut Conn, cursor: Option<i64>, rows: bool) -> Result<i64, End> {
    match &conn.tenant {
        Backend::Local(store) => {
            let job = Job {
                store: Arc::clone(store),
                model: Arc::clone(&conn.model),
                profile: Profile::clone(conn.profile()),
                limits: Arc::clone(&conn.state.limits),
                metrics: Arc::clone(&conn.state.metrics),
                rows,
            };
            Box::pin(initial(&job, conn, cursor)).await
        }
        Backend::Remote(remote) => Box::pin(Arc::clone(remote).sync(conn, cursor, rows)).await,
    }
}

/// Sends the catch-up or snapshot and `synced`; returns the version the client has after it.
pub(crate) async fn initial(job: &Job, out: &mut impl Out, cursor: Option<i64>) -> Result<i64, End> {
    // One read decides and, for a snapshot, streams it: a reconnection storm pays one hand-off to
    // a reader thread per session, not two.
    let version = match snapshot(job, out, cursor).await? {
        Synced::Snapshot(version) => version,
        Synced::CatchUp(from) => catch_up(job, out, from).await?,
    };
    let channel = job.profile.channel.as_str().into();
    out.text(ServerMsg::Synced { channel, version }.to_json()).await?;
    out.flush().await?;
    Ok(version)
}

pub(crate) fn storage(e: crate::error::Error) -> End {
    tracing::error!(error = %e, "reading for a client failed");
    End::Close(close::INTERNAL, "the server could not read its database".into())
}

async fn catch_up(job: &Job, out: &mut impl Out, cursor: i64) -> Result<i64, End> {
    let mut sent = cursor;
    loop {
        let from = sent;
        let entries = job.store.read(move |c| log_after(c, from, CATCH_UP_BATCH)).await.map_err(storage)?;
        if entries.is_empty() {
            return Ok(sent);
        }
        for entry in entries {
            if let Some(diff) = entry.view(&job.model.rules, &job.profile) {
                out.text(diff_frame(&job.profile.channel, entry.version, &diff)).await?;
            }
            sent = entry.version;
        }
    }
}

enum Part {
    /// The change log still covers the client's cursor: no snapshot, a catch-up from it.
    CatchUp(i64),
    Begin(u64),
    Chunk(u64, String),
    End(i64),
}

/// What [`snapshot`] did.
enum Synced {
    /// Sent a snapshot as of this version.
    Snapshot(i64),
    /// Sent nothing: the log covers the cursor, which the catch-up starts from.
    CatchUp(i64),
}

/// Sends a snapshot of the channel, unless `cursor` is one the change log still covers.
async fn snapshot(job: &Job, out: &mut impl Out, cursor: Option<i64>) -> Result<Synced, End> {
    let (tx, mut rx) = mpsc::channel::<Part>(2);
    let (schema, rules, profile) =
        (Arc::clone(&job.model.schema), Arc::clone(&job.model.rules), job.profile.clone());
    let chunk_rows = job.limits.snapshot_chunk_rows.max(1);
    let chunk_bytes = job.limits.snapshot_chunk_bytes;
    let as_rows = job.rows;
    // The reader streams chunks from one read transaction, so the snapshot is consistent as of its
    // version; the channel is bounded, so a slow client holds two chunks in memory, not the table.
    let metrics = Arc::clone(&job.metrics);
    let store = Arc::clone(&job.store);
    let reader = async move {
        store
            .read(move |c| {
                let t = c.transaction_with_behavior(TransactionBehavior::Deferred)?;
                let (version, oldest) = log_bounds(&t)?;
                let gone = || crate::error::Error::Unavailable("client went away".into());
                // A cursor the log covers gets a catch-up, unless it is from a history a restore
                // undid (its client has rows the server no longer has).
                if let Some(cursor) = cursor
                    && cursor <= version
                    && cursor + 1 >= oldest
                    && !crate::backup::cursor_lost(&t, cursor)?
                {
                    metrics.catch_ups.inc();
                    return tx.blocking_send(Part::CatchUp(cursor)).map_err(|_| gone());
                }
                metrics.snapshots.inc();
                let filter = rules.route_filter(&profile);
                let filter: Vec<(&str, &sqlite_ext::Value)> = filter.iter().map(|(k, v)| (k, *v)).collect();
                // A tenant's database holds only the tenant's rows.
                let constant: Vec<&str> = rules.tenant_route().map(|(c, _)| c).into_iter().collect();
                // Smallest tables first: the metadata and layouts (and the small tables a page looks
                // up) arrive before the big ones, so a first sync can draw the app from its first
                // chunks.
                let mut tables = Vec::new();
                for table in schema.tables() {
                    tables.push((table.count(&t, &filter)? as u64, table));
                }
                tables.sort_by_key(|(n, _)| *n);
                let total = tables.iter().map(|(n, _)| n).sum();
                tx.blocking_send(Part::Begin(total)).map_err(|_| gone())?;
                let mut done = 0u64;
                // A chunk is written as it fills (as a diff or as rows), and ends at `chunk_rows`
                // rows or past `chunk_bytes` bytes, whichever comes first.
                let mut chunk = Chunk::new(as_rows);
                let route: Vec<sqlite_ext::Value> = profile.route.clone();
                for (_, table) in tables {
                    // As rows, each written as its insert would be (`Rules::view_owned`) without
                    // making the change.
                    let columns = rules.insert_columns(&profile, table);
                    table.scan(&t, &filter, &constant, |row| -> crate::error::Result<()> {
                        match &mut chunk {
                            Chunk::Rows(w) => w.push_row(&table.name, columns.names(), columns.values(row)),
                            Chunk::Diff(w) => {
                                let row = row.iter().map(|v| v.to_value()).collect();
                                if let Some(change) =
                                    rules.view_owned(&profile, table.insert_change(row), &route)
                                {
                                    w.push(&change);
                                }
                            }
                        }
                        if chunk.changes() >= chunk_rows || chunk.len() >= chunk_bytes {
                            done += chunk.changes() as u64;
                            let json = std::mem::replace(&mut chunk, Chunk::new(as_rows)).finish();
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
    };
    // The frames are written as the reader makes them, in this task: a session's initial sync is
    // one task and one reader thread.
    let channel = job.profile.channel.clone();
    let writer = async move {
        let (mut rows, mut synced) = (0, Synced::Snapshot(0));
        while let Some(part) = rx.recv().await {
            match part {
                Part::CatchUp(cursor) => synced = Synced::CatchUp(cursor),
                Part::Begin(n) => {
                    rows = n;
                    out.text(ServerMsg::SnapshotBegin { channel: channel.as_str().into(), rows }.to_json())
                        .await?;
                }
                Part::Chunk(rows_done, json) => {
                    let json = RawValue::from_string(json).expect("a chunk's JSON is valid JSON");
                    let (channel, json) = (channel.as_str().into(), DiffJson::Encoded(&json));
                    let msg = match job.rows {
                        true => ServerMsg::SnapshotRows { channel, rows_done, rows, tables: json },
                        false => ServerMsg::Snapshot { channel, rows_done, rows, diff: json },
                    };
                    out.text(msg.to_json()).await?;
                }
                Part::End(version) => {
                    out.text(ServerMsg::SnapshotEnd { channel: channel.as_str().into(), version }.to_json())
                        .await?;
                    synced = Synced::Snapshot(version);
                }
            }
        }
        Ok(synced)
    };
    // When the writer stops (the client went away), the channel closes and the reader stops too.
    let (read, written) = tokio::join!(reader, writer);
    let synced = written?;
    read.map_err(storage)?;
    Ok(synced)
}

/// A snapshot chunk being written: a diff of inserts, or rows (`snapshot_rows`).
enum Chunk {
    Diff(DiffWriter),
    Rows(RowsWriter),
}

impl Chunk {
    fn new(rows: bool) -> Chunk {
        match rows {
            true => Chunk::Rows(RowsWriter::default()),
            false => Chunk::Diff(DiffWriter::default()),
        }
    }

    fn changes(&self) -> usize {
        match self {
            Chunk::Diff(w) => w.changes(),
            Chunk::Rows(w) => w.rows(),
        }
    }

    fn len(&self) -> usize {
        match self {
            Chunk::Diff(w) => w.len(),
            Chunk::Rows(w) => w.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.changes() == 0
    }

    fn finish(self) -> String {
        match self {
            Chunk::Diff(w) => w.finish(),
            Chunk::Rows(w) => w.finish(),
        }
    }
}

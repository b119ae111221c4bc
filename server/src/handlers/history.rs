//! `history`: who changed a record, when, and which fields. Answered only from what the user may see:
//! a record outside the user's channel (another tenant's, or one that does not exist) has no history,
//! exactly like a record that never existed, so the answer tells nothing of other channels; a column
//! hidden from the role is left out of every entry.

use std::sync::Arc;

use sqlite_ext::protocol::HistoryEntry;

use crate::cluster::Backend;
use crate::connection::{Conn, End};
use crate::error::{Error, Result};
use crate::model::Model;
use crate::protocol::ServerMsg;
use crate::rules::Profile;
use crate::store::{Store, history_of};

/// The newest entries a `history` answer holds.
const HISTORY_LIMIT: usize = 50;

pub(crate) async fn handle(conn: &mut Conn, table: String, id: String) -> Result<(), End> {
    let text = match &conn.tenant {
        Backend::Local(store) => {
            answer(store, Arc::clone(&conn.model), Profile::clone(conn.profile()), table, id).await
        }
        Backend::Remote(remote) => {
            let (remote, claims) = (Arc::clone(remote), conn.claims.clone());
            return remote.call_and_send(conn, crate::cluster::Call::History { claims, table, id }).await;
        }
    };
    conn.send_text(text.map_err(super::sync::storage)?).await
}

/// The `history` frame (or the `error` frame) for `table`/`id`, read from the tenant's database.
pub(crate) async fn answer(
    store: &Arc<Store>,
    model: Arc<Model>,
    profile: Profile,
    table: String,
    id: String,
) -> Result<String> {
    if model.schema.table(&table).is_err() {
        let e = Error::Protocol(format!("{table:?} is not a synced table"));
        return Ok(super::error_frame(None, &e));
    }
    let (t, i) = (table.clone(), id.clone());
    let entries = store
        .read(move |c| {
            let schema = &model.schema;
            let Ok(key) = sqlite_ext::ui::key_of(schema, &t, &i) else { return Ok(Vec::new()) };
            let route_cols: Vec<&str> = model.rules.route_columns().collect();
            let route = schema.table(&t)?.read_columns(c, &key, &route_cols)?;
            if route.as_deref() != Some(profile.route.as_slice()) {
                return Ok(Vec::new());
            }
            let role = &profile.role;
            Ok(history_of(c, &t, &i, HISTORY_LIMIT)?
                .into_iter()
                .filter_map(|mut e: HistoryEntry| {
                    e.columns.retain(|col| !role.hides(&t, col));
                    (e.op != "update" || !e.columns.is_empty()).then_some(e)
                })
                .collect())
        })
        .await?;
    Ok(ServerMsg::History { table, id, entries }.to_json())
}

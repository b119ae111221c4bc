//! `push`: a client's mutation. The diff is decoded strictly here; rights, idempotency and the merge
//! happen in the writer, in the transaction that makes the result durable. The answer (`ack` with
//! the conflict alert, or `reject`) comes back through [`answer`]. When another node owns the tenant
//! the push is forwarded to it (`crate::cluster`), which does the same and answers the same way.

use std::sync::Arc;
use std::time::Duration;

use crate::cluster::Backend;
use crate::connection::{Conn, End};
use crate::error::Error;
use crate::protocol::{ServerMsg, close};
use crate::store::{Outcome, Push, PushReply, Store, WriteReq};

pub(crate) async fn handle(conn: &mut Conn, mutation_id: String, diff: serde_json::Value) -> Result<(), End> {
    conn.state.metrics.pushes.inc();
    if mutation_id.is_empty() || mutation_id.len() > 200 {
        return conn.error(&Error::Protocol("mutation_id must be 1 to 200 characters".into())).await;
    }
    let diff = match sqlite_ext::Diff::from_value(diff, &conn.model.schema) {
        Ok(d) => d,
        Err(e) => {
            // Never applied, so nothing to remember: the same bytes always get the same answer.
            conn.state.metrics.rejects.inc();
            let (code, reason) = rejected(e);
            let mutation_id = mutation_id.into();
            return conn
                .send(&ServerMsg::Reject { mutation_id, code: code.into(), reason: reason.into() })
                .await;
        }
    };
    if conn.inflight >= conn.state.limits.max_inflight_pushes {
        return Err(End::Close(close::FLOOD, "too many pushes waiting for acks".into()));
    }
    let replies = conn.reply_to();
    let store = match &conn.tenant {
        Backend::Local(store) => Arc::clone(store),
        // Another node owns the tenant: it merges and commits; the answer comes back the same way.
        Backend::Remote(remote) => {
            remote.push(&conn.claims, mutation_id, &diff, replies, &conn.state.limits);
            conn.inflight += 1;
            return Ok(());
        }
    };
    let push = Push {
        user: conn.claims.sub.to_string(),
        profile: conn.profile().as_ref().clone(),
        mutation_id: mutation_id.clone(),
        diff,
        reply: replies,
    };
    match queue(&store, push, Duration::from_millis(conn.state.limits.send_timeout_ms)).await {
        Ok(()) => {
            conn.inflight += 1;
            Ok(())
        }
        Err(e) => conn.error_for(&mutation_id, &e).await,
    }
}

/// A diff that does not decode, as its reject's code and reason: never applied.
pub(crate) fn rejected(e: sqlite_ext::Error) -> (String, String) {
    let reason = e.to_string();
    (Error::from(e).code().into(), reason)
}

/// Queues a decoded push on the tenant's writer, within the tenant's write rate.
pub(crate) async fn queue(store: &Arc<Store>, push: Push, wait: Duration) -> Result<(), Error> {
    store.admit_write()?;
    store.submit(WriteReq::Push(push), wait).await
}

/// Sends the writer's answer to a push.
pub(crate) async fn answer(conn: &mut Conn, reply: PushReply) -> Result<(), End> {
    conn.inflight = conn.inflight.saturating_sub(1);
    let id = &reply.mutation_id;
    match reply.result {
        Ok(Outcome::Ack { version, conflicts }) => {
            conn.send(&ServerMsg::Ack { mutation_id: id.into(), version, conflicts: conflicts.into() }).await
        }
        Ok(Outcome::Reject { code, reason }) => {
            conn.send(&ServerMsg::Reject { mutation_id: id.into(), code: code.into(), reason: reason.into() })
                .await
        }
        Err(e) => conn.error_for(id, &e).await,
    }
}

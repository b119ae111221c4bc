//! One handler per client message, dispatched from [`ClientMsg`](crate::protocol::ClientMsg).

pub(crate) mod customize;
pub(crate) mod history;
pub(crate) mod push;
pub(crate) mod sync;

use std::sync::Arc;

use crate::cluster::{Backend, Call};
use crate::connection::{Conn, End};
use crate::error::Error;
use crate::protocol::{ClientMsg, ServerMsg};
use crate::rules::Profile;
use crate::store::Store;

/// An `error` frame (about one push, or not).
pub(crate) fn error_frame(mutation_id: Option<&str>, e: &Error) -> String {
    let message = e.to_string();
    let (code, retry) = (e.code().into(), e.retryable());
    ServerMsg::Error { code, mutation_id: mutation_id.map(Into::into), message: message.into(), retry }
        .to_json()
}

/// The `devices` frame for the tenant's admins (sync health: the sync rules' `admin = true`); an
/// error frame for anyone else.
pub(crate) fn devices_frame(store: &Store, profile: &Profile) -> String {
    match profile.role.admin {
        true => ServerMsg::Devices { devices: store.devices.list() }.to_json(),
        false => error_frame(None, &Error::Forbidden("only the company's admins see its devices".into())),
    }
}

/// Handles one text frame of a live connection. Bad frames get an error frame; the connection stays.
pub(crate) async fn dispatch(conn: &mut Conn, text: &str) -> Result<(), End> {
    let msg: ClientMsg = match serde_json::from_str(text) {
        Ok(m) => m,
        Err(e) => return conn.error(&Error::Protocol(format!("malformed frame: {e}"))).await,
    };
    match msg {
        ClientMsg::Push { mutation_id, diff } => {
            push::handle(conn, mutation_id.into_owned(), diff.into_tree()).await
        }
        ClientMsg::Ping { id } => conn.send(&ServerMsg::Pong { id }).await,
        ClientMsg::Report { device } => match device.check() {
            Ok(()) => {
                let id = Arc::clone(&conn.client_id);
                conn.client_id = conn.tenant.seen(&mut conn.claims, &id, None, Some(device));
                Ok(())
            }
            Err(e) => conn.error(&Error::Protocol(format!("bad device report: {e}"))).await,
        },
        ClientMsg::ListDevices {} => match &conn.tenant {
            Backend::Local(store) => {
                let text = devices_frame(store, conn.profile());
                conn.send_text(text).await
            }
            Backend::Remote(remote) => {
                let claims = conn.claims.clone();
                Arc::clone(remote).call_and_send(conn, Call::Devices { claims }).await
            }
        },
        ClientMsg::History { table, id } => history::handle(conn, table.into_owned(), id.into_owned()).await,
        ClientMsg::Customize { id, request } => customize::handle(conn, id, request).await,
        ClientMsg::Hello { .. } => conn.error(&Error::Protocol("hello was already received".into())).await,
        ClientMsg::Unknown => conn.error(&Error::Protocol("unknown message type".into())).await,
    }
}

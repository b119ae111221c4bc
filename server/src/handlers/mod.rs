//! One handler per client message, dispatched from [`ClientMsg`](crate::protocol::ClientMsg).

pub(crate) mod customize;
pub(crate) mod history;
pub(crate) mod push;
pub(crate) mod sync;

use crate::connection::{Conn, End};
use crate::error::Error;
use crate::protocol::{ClientMsg, ServerMsg};

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
                let claims = &conn.claims;
                conn.store.devices.seen(
                    &conn.client_id,
                    &claims.sub,
                    &claims.role,
                    None,
                    Some(&device),
                    true,
                );
                Ok(())
            }
            Err(e) => conn.error(&Error::Protocol(format!("bad device report: {e}"))).await,
        },
        // Sync health: the tenant's admins only (the sync rules' `admin = true`).
        ClientMsg::ListDevices {} => match conn.profile.role.admin {
            true => {
                let devices = conn.store.devices.list();
                conn.send(&ServerMsg::Devices { devices }).await
            }
            false => conn.error(&Error::Forbidden("only the company's admins see its devices".into())).await,
        },
        ClientMsg::History { table, id } => history::handle(conn, table.into_owned(), id.into_owned()).await,
        ClientMsg::Customize { id, request } => customize::handle(conn, id, request).await,
        ClientMsg::Hello { .. } => conn.error(&Error::Protocol("hello was already received".into())).await,
        ClientMsg::Unknown => conn.error(&Error::Protocol("unknown message type".into())).await,
    }
}

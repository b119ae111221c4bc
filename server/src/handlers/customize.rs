//! `customize`: an admin publishes a draft of the tenant's object types, fields and layouts, rolls
//! back to an earlier version, or lists the versions. Only a role with `admin = true` in the sync
//! rules customizes; anyone else is refused with `forbidden`, and nothing is read for them.

use sqlite_ext::protocol::{CustomizeAnswer, CustomizeRequest};

use crate::connection::{Conn, End};
use crate::protocol::ServerMsg;
use crate::store::{Publish, customization_versions};

pub(crate) async fn handle(conn: &mut Conn, id: String, request: CustomizeRequest) -> Result<(), End> {
    let answer = if !conn.profile.role.admin {
        CustomizeAnswer::Refused {
            code: "forbidden".into(),
            reason: "Only the company's admins customize it".into(),
            lost: Vec::new(),
        }
    } else if let CustomizeRequest::Versions {} = request {
        match conn.store.read(|c| customization_versions(c)).await {
            Ok(versions) => CustomizeAnswer::Versions { versions, roles: conn.model.rules.role_names() },
            Err(e) => return Err(super::sync::storage(e)),
        }
    } else {
        let route = conn.model.rules.route_of(&conn.profile).collect();
        let publish = Publish { request, user: conn.claims.sub.clone(), route };
        match conn.store.customize(publish).await {
            Ok(answer) => answer,
            Err(e) if e.retryable() => CustomizeAnswer::Refused {
                code: "unavailable".into(),
                reason: format!("The server could not publish now; try again ({})", e.reason()),
                lost: Vec::new(),
            },
            Err(e) => {
                tracing::error!(tenant = %conn.claims.tenant, error = %e, "publishing a customization failed");
                CustomizeAnswer::Refused { code: "internal".into(), reason: e.reason(), lost: Vec::new() }
            }
        }
    };
    conn.send(&ServerMsg::Customized { id, answer }).await
}

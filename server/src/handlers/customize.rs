//! `customize`: an admin publishes a draft of the tenant's object types, fields and layouts, rolls
//! back to an earlier version, or lists the versions. Only a role with `admin = true` in the sync
//! rules customizes; anyone else is refused with `forbidden`, and nothing is read for them.

use std::sync::Arc;

use sqlite_ext::protocol::{CustomizeAnswer, CustomizeRequest};

use crate::cluster::Backend;
use crate::connection::{Conn, End};
use crate::error::Result;
use crate::model::Model;
use crate::protocol::ServerMsg;
use crate::rules::Profile;
use crate::store::{Publish, Store, customization_versions};

pub(crate) async fn handle(conn: &mut Conn, id: String, request: CustomizeRequest) -> Result<(), End> {
    let text = match &conn.tenant {
        Backend::Local(store) => {
            let (model, profile) = (Arc::clone(&conn.model), conn.profile().clone());
            answer(store, &model, &profile, &conn.claims.sub, id, request).await
        }
        Backend::Remote(remote) => {
            let (remote, claims) = (Arc::clone(remote), conn.claims.clone());
            return remote.call_and_send(conn, crate::cluster::Call::Customize { claims, id, request }).await;
        }
    };
    conn.send_text(text.map_err(super::sync::storage)?).await
}

/// The `customized` frame answering `request` of `user` (an `Err` only when the database cannot be
/// read: the session ends).
pub(crate) async fn answer(
    store: &Arc<Store>,
    model: &Model,
    profile: &Profile,
    user: &str,
    id: String,
    request: CustomizeRequest,
) -> Result<String> {
    let answer = if !profile.role.admin {
        CustomizeAnswer::Refused {
            code: "forbidden".into(),
            reason: "Only the company's admins customize it".into(),
            lost: Vec::new(),
        }
    } else if let CustomizeRequest::Versions {} = request {
        let versions = store.read(|c| customization_versions(c)).await?;
        CustomizeAnswer::Versions { versions, roles: model.rules.role_names() }
    } else {
        let route = model.rules.route_of(profile).collect();
        let publish = Publish { request, user: user.to_owned(), route };
        match store.customize(publish).await {
            Ok(answer) => answer,
            Err(e) if e.retryable() => CustomizeAnswer::Refused {
                code: "unavailable".into(),
                reason: format!("The server could not publish now; try again ({})", e.reason()),
                lost: Vec::new(),
            },
            Err(e) => {
                tracing::error!(tenant = %store.tenant, error = %e, "publishing a customization failed");
                CustomizeAnswer::Refused { code: "internal".into(), reason: e.reason(), lost: Vec::new() }
            }
        }
    };
    Ok(ServerMsg::Customized { id, answer }.to_json())
}

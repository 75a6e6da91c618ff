//! `token mint` and `admin rooms|snapshots|restore`.

use std::time::{SystemTime, UNIX_EPOCH};

use edgeroom_client::{Right, RoomGrant, TokenRequest};

use crate::args::{AdminAction, TokenAction};
use crate::failure::{address, Failure, AUTH};
use crate::{out, Link};

pub async fn token(link: &Link, action: TokenAction) -> Result<(), Failure> {
    let TokenAction::Mint { tenant, sub, grants, ttl, secret, admin_key } = action;
    edgeroom_client::validate_name("tenant", &tenant).map_err(|e| Failure::usage(e.to_string()))?;
    let rooms = grants.iter().map(|grant| parse_grant(grant)).collect::<Result<Vec<_>, _>>()?;
    if let Some(secret) = secret {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
        let claims = edgeroom_auth::Claims { sub, tenant, rooms, exp: now + ttl.as_secs(), nbf: None };
        let token = edgeroom_auth::sign(&claims, &secret).map_err(|e| Failure::usage(e.to_string()))?;
        return out(token);
    }
    let Some(key) = admin_key else {
        return Err(Failure {
            code: AUTH,
            message: "token mint needs --secret (EDGEROOM_TENANT_SECRET) or --admin-key (EDGEROOM_ADMIN_KEY)"
                .into(),
        });
    };
    let request = TokenRequest { sub, rooms, ttl_secs: Some(ttl.as_secs()) };
    let response = link.rest()?.with_admin_key(Some(key)).mint_token(&tenant, &request).await?;
    out(response.token)
}

/// `ROOM=RIGHTS`, rights comma-separated.
fn parse_grant(text: &str) -> Result<RoomGrant, Failure> {
    let Some((room, rights)) = text.split_once('=') else {
        return Err(Failure::usage(format!("grant {text:?} should be ROOM=RIGHTS, e.g. lobby=read,write")));
    };
    let rights = rights
        .split(',')
        .map(|name| {
            serde_json::from_value::<Right>(serde_json::Value::String(name.trim().to_owned())).map_err(|_| {
                Failure::usage(format!("unknown right {name:?} (rights: read, write, presence, admin)"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RoomGrant { room: room.to_owned(), rights })
}

pub async fn admin(link: &Link, admin_key: Option<String>, action: AdminAction) -> Result<(), Failure> {
    let Some(key) = admin_key else {
        return Err(Failure {
            code: AUTH,
            message: "admin commands need --admin-key (EDGEROOM_ADMIN_KEY)".into(),
        });
    };
    let rest = link.rest()?.with_admin_key(Some(key));
    match action {
        AdminAction::Rooms { tenant } => {
            for room in rest.rooms(&tenant).await? {
                out(serde_json::to_string(&room).unwrap_or_default())?;
            }
            Ok(())
        }
        AdminAction::Snapshots { room } => {
            let (tenant, name) = address("room", &room)?;
            for snapshot in rest.snapshots(&tenant, &name).await? {
                out(serde_json::to_string(&snapshot).unwrap_or_default())?;
            }
            Ok(())
        }
        AdminAction::Kick { room, connection_id } => {
            let (tenant, name) = address("room", &room)?;
            out(serde_json::to_string(&rest.kick(&tenant, &name, connection_id).await?).unwrap_or_default())
        }
        AdminAction::Close { room } => {
            let (tenant, name) = address("room", &room)?;
            out(serde_json::to_string(&rest.close_room(&tenant, &name).await?).unwrap_or_default())
        }
        AdminAction::Flush { room } => {
            let (tenant, name) = address("room", &room)?;
            out(serde_json::to_string(&rest.flush(&tenant, &name).await?).unwrap_or_default())
        }
        AdminAction::Restore { room, seq } => {
            let (tenant, name) = address("room", &room)?;
            let result = rest.restore(&tenant, &name, seq).await?;
            out(serde_json::to_string(&result).unwrap_or_default())
        }
    }
}

//! The desired state, read from the database: every user with a placed, live slice.

use std::collections::BTreeMap;

use rusqlite::Connection;

use super::*;
use crate::domain::{PrivateIp, SshPublicKey, Username};

/// The slices the gateway serves: placed, not on their way out, of users not disabled. When a
/// user has several, the login goes to the running one made last.
pub fn desired(conn: &Connection, only: Option<&Username>) -> crate::error::Result<Desired> {
    let rows = crate::records::gateway::live_slices(conn)?;
    let mut d = Desired::default();
    let mut map = BTreeMap::new();
    for (slice_id, name, ip, subdomain) in rows {
        // Values were checked when written; a row that no longer parses is left out (and
        // logged) rather than written to a host.
        let (Ok(username), Ok(ip)) = (Username::parse(&name), PrivateIp::parse(&ip)) else {
            tracing::warn!(
                slice_id,
                "gateway: skipping a slice with a bad username or address"
            );
            continue;
        };
        if render::valid_label(&subdomain) {
            map.insert(subdomain, ip);
        }
        if only.is_some_and(|o| *o != username) {
            continue;
        }
        // Later rows win: running ones come last, newest last.
        d.users.insert(
            name,
            Want {
                username,
                slice_id,
                ip,
                keys: vec![],
            },
        );
    }
    d.map = map.into_iter().collect();
    for (name, key) in crate::records::gateway::all_keys(conn)? {
        if let (Some(w), Ok(k)) = (d.users.get_mut(&name), SshPublicKey::parse(&key)) {
            w.keys.push(k);
        }
    }
    Ok(d)
}

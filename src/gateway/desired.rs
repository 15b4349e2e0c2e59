//! The desired state, read from the database: every user with a placed, live slice.

use std::collections::BTreeMap;

use rusqlite::Connection;

use super::*;
use crate::domain::{PrivateIp, SshPublicKey, Username};

/// The slices the gateway serves: placed, not on their way out, of users not disabled. When a
/// user has several, the login goes to the running one made last.
pub fn desired(conn: &Connection, only: Option<&Username>) -> crate::error::Result<Desired> {
    let mut stmt = conn.prepare_cached(
        "SELECT s.id, u.username, s.ip, s.subdomain, s.state
           FROM slices s JOIN users u ON u.id = s.user_id
          WHERE s.state IN ('provisioning', 'running', 'stopped')
            AND s.ip IS NOT NULL AND s.node_id IS NOT NULL AND u.disabled_at IS NULL
          ORDER BY (s.state = 'running'), s.id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
        ))
    })?;
    let mut d = Desired::default();
    let mut map = BTreeMap::new();
    for row in rows {
        let (slice_id, name, ip, subdomain) = row?;
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
    let mut keys = conn.prepare_cached(
        "SELECT u.username, k.key FROM ssh_keys k JOIN users u ON u.id = k.user_id ORDER BY k.id",
    )?;
    let rows = keys.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    for row in rows {
        let (name, key) = row?;
        if let (Some(w), Ok(k)) = (d.users.get_mut(&name), SshPublicKey::parse(&key)) {
            w.keys.push(k);
        }
    }
    Ok(d)
}

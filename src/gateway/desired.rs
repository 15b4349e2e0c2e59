//! The desired state, read from the database: every user with a placed, live slice.

use std::collections::BTreeMap;

use rusqlite::Connection;

use super::*;
use crate::domain::{PrivateIp, SshPublicKey, Username};
use crate::records::gateway::{self as records, LiveSlice};

/// The slices the gateway serves: placed, not on their way out, of users not disabled. When a
/// user has several, the login goes to the running one made last. For some users (`only`),
/// only their slices, their keys and the map lines their slices' names could hold are read, so
/// a run for a few users costs the same however many slices there are.
pub fn desired(conn: &Connection, only: Option<&[Username]>) -> crate::error::Result<Desired> {
    let mut d = Desired::default();
    let (rows, keys) = match only {
        None => (records::live_slices(conn)?, records::all_keys(conn)?),
        Some(users) => {
            let (mut rows, mut keys, mut lines) = (Vec::new(), Vec::new(), BTreeMap::new());
            for u in users {
                rows.extend(records::live_slices_of(conn, u.as_str())?);
                keys.extend(records::keys_of(conn, u.as_str())?);
                // Every name the user's slices ever had: a line may have to go, or be
                // another's now.
                for name in records::subdomains_of(conn, u.as_str())? {
                    let ip = records::live_named(conn, &name)?
                        .and_then(|s| usable(&s))
                        .map(|(_, ip)| ip);
                    lines.insert(name, ip);
                }
            }
            lines.retain(|name, _| render::valid_label(name));
            d.map_lines = Some(lines);
            (rows, keys)
        }
    };
    let mut map = BTreeMap::new();
    for row in rows {
        let Some((username, ip)) = usable(&row) else {
            continue;
        };
        if render::valid_label(&row.subdomain) {
            map.insert(row.subdomain.clone(), ip);
        }
        // Later rows win: running ones come last, newest last.
        d.users.insert(
            row.username.clone(),
            Want {
                username,
                slice_id: row.slice_id,
                ip,
                keys: vec![],
            },
        );
    }
    if d.map_lines.is_none() {
        d.map = map.into_iter().collect();
    }
    for (name, key) in keys {
        if let (Some(w), Ok(k)) = (d.users.get_mut(&name), SshPublicKey::parse(&key)) {
            w.keys.push(k);
        }
    }
    Ok(d)
}

/// A row's user and address. Values were checked when written; a row that no longer parses is
/// left out (and logged) rather than written to a host.
fn usable(row: &LiveSlice) -> Option<(Username, PrivateIp)> {
    match (Username::parse(&row.username), PrivateIp::parse(&row.ip)) {
        (Ok(u), Ok(ip)) => Some((u, ip)),
        _ => {
            tracing::warn!(
                slice_id = row.slice_id,
                "gateway: skipping a slice with a bad username or address"
            );
            None
        }
    }
}

//! What the master keeps about the gateway: its runs (`gateway_runs`), the host key staff
//! accepted (`settings`), users' hop keys (`users.hop_key`) and the rows its desired state is
//! made of (live slices and their owners' keys).

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::error::Result;
use crate::store::now;

/// Records a run and keeps only the last thousand.
#[allow(clippy::too_many_arguments)]
pub fn record_run(
    conn: &Connection,
    scope: &str,
    ok: bool,
    changes: i64,
    summary: &str,
    error: &str,
    duration_ms: i64,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO gateway_runs (at, scope, ok, changes, summary, error, duration_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        now(),
        scope,
        ok,
        changes,
        summary,
        error,
        duration_ms
    ])?;
    conn.prepare_cached(
        "DELETE FROM gateway_runs WHERE id <= (SELECT max(id) - 1000 FROM gateway_runs)",
    )?
    .execute([])?;
    Ok(())
}

/// The last runs, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub id: i64,
    pub at: i64,
    pub scope: String,
    pub ok: bool,
    pub changes: i64,
    pub summary: String,
    pub error: String,
    pub duration_ms: i64,
}

pub fn runs(conn: &Connection, limit: i64) -> Result<Vec<Run>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, at, scope, ok, changes, summary, error, duration_ms FROM gateway_runs
          ORDER BY id DESC LIMIT ?1",
    )?;
    let rows = stmt
        .query_map([limit], |r| {
            Ok(Run {
                id: r.get(0)?,
                at: r.get(1)?,
                scope: r.get(2)?,
                ok: r.get(3)?,
                changes: r.get(4)?,
                summary: r.get(5)?,
                error: r.get(6)?,
                duration_ms: r.get(7)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// The gateway host key staff accepted in the web interface, if any.
pub fn accepted_host_key(conn: &Connection) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT value FROM settings WHERE key = 'gateway_host_key'")?
        .query_row([], |r| r.get(0))
        .optional()?)
}

pub fn accept_host_key(conn: &Connection, fingerprint: &str, by: i64) -> Result<()> {
    conn.prepare_cached("INSERT OR REPLACE INTO settings (key, value, set_by, set_at) VALUES ('gateway_host_key', ?1, ?2, ?3)")?
            .execute(params![fingerprint, by, now()],
    )?;
    Ok(())
}

/// What is recorded about a user's gateway login.
#[derive(Debug, Clone, Default)]
pub struct UserGateway {
    pub problem: Option<String>,
    pub hop_key: Option<String>,
}

/// A user's gateway problem and hop key (nothing when there is no such user).
pub fn problem_and_hop_key(conn: &Connection, username: &str) -> Result<UserGateway> {
    Ok(conn
        .prepare_cached("SELECT gateway_problem, hop_key FROM users WHERE username = ?1")?
        .query_row([username], |r| {
            Ok(UserGateway {
                problem: r.get(0)?,
                hop_key: r.get(1)?,
            })
        })
        .optional()?
        .unwrap_or_default())
}

/// The same for every user who has a problem or a hop key, by username.
pub fn problems_and_hop_keys(
    conn: &Connection,
) -> Result<std::collections::HashMap<String, UserGateway>> {
    let mut stmt = conn.prepare_cached(
        "SELECT username, gateway_problem, hop_key FROM users
          WHERE gateway_problem IS NOT NULL OR hop_key IS NOT NULL",
    )?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                UserGateway {
                    problem: r.get(1)?,
                    hop_key: r.get(2)?,
                },
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

/// A user's hop public key as the master last gave it (None: none yet, or no such user).
pub fn hop_key_of(conn: &Connection, user_id: i64) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT hop_key FROM users WHERE id = ?1")?
        .query_row([user_id], |r| r.get::<_, Option<String>>(0))
        .optional()?
        .flatten())
}

pub fn set_hop_key(conn: &Connection, username: &str, key: Option<&str>) -> Result<()> {
    conn.prepare_cached("UPDATE users SET hop_key = ?2 WHERE username = ?1")?
        .execute(params![username, key])?;
    Ok(())
}

/// A slice the gateway serves.
#[derive(Debug, Clone)]
pub struct LiveSlice {
    pub slice_id: i64,
    pub username: String,
    pub ip: String,
    pub subdomain: String,
}

/// What makes a slice one the gateway serves: placed, not on its way out, of a user not
/// disabled. Rows come running ones last, newest last.
const LIVE: &str = "s.state IN ('provisioning', 'running', 'stopped')
            AND s.ip IS NOT NULL AND s.node_id IS NOT NULL AND u.disabled_at IS NULL";

fn live_rows(
    stmt: &mut rusqlite::CachedStatement,
    p: impl rusqlite::Params,
) -> Result<Vec<LiveSlice>> {
    let rows = stmt
        .query_map(p, |r| {
            Ok(LiveSlice {
                slice_id: r.get(0)?,
                username: r.get(1)?,
                ip: r.get(2)?,
                subdomain: r.get(3)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Every slice the gateway serves.
pub fn live_slices(conn: &Connection) -> Result<Vec<LiveSlice>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT s.id, u.username, s.ip, s.subdomain
           FROM slices s JOIN users u ON u.id = s.user_id
          WHERE {LIVE}
          ORDER BY (s.state = 'running'), s.id"
    ))?;
    live_rows(&mut stmt, [])
}

/// The slices of one user the gateway serves.
pub fn live_slices_of(conn: &Connection, username: &str) -> Result<Vec<LiveSlice>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT s.id, u.username, s.ip, s.subdomain
           FROM users u JOIN slices s ON s.user_id = u.id
          WHERE u.username = ?1 AND {LIVE}
          ORDER BY (s.state = 'running'), s.id"
    ))?;
    live_rows(&mut stmt, [username])
}

/// The slice the gateway serves under `subdomain` (the last of `live_slices` order).
pub fn live_named(conn: &Connection, subdomain: &str) -> Result<Option<LiveSlice>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT s.id, u.username, s.ip, s.subdomain
           FROM slices s JOIN users u ON u.id = s.user_id
          WHERE s.subdomain = ?1 AND {LIVE}
          ORDER BY (s.state = 'running') DESC, s.id DESC LIMIT 1"
    ))?;
    Ok(live_rows(&mut stmt, [subdomain])?.pop())
}

/// The name of every slice the user has had, whatever its state.
pub fn subdomains_of(conn: &Connection, username: &str) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT s.subdomain FROM users u JOIN slices s ON s.user_id = u.id
          WHERE u.username = ?1",
    )?;
    let rows = stmt
        .query_map([username], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// (username, key line) of every student key, oldest first.
pub fn all_keys(conn: &Connection) -> Result<Vec<(String, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT u.username, k.key FROM ssh_keys k JOIN users u ON u.id = k.user_id ORDER BY k.id",
    )?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// (username, key line) of one user's keys, oldest first.
pub fn keys_of(conn: &Connection, username: &str) -> Result<Vec<(String, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT u.username, k.key FROM users u JOIN ssh_keys k ON k.user_id = u.id
          WHERE u.username = ?1 ORDER BY k.id",
    )?;
    let rows = stmt
        .query_map([username], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// (slice, user, node) of the user's placed slices that run or are stopped: they get new keys.
pub fn keyed_slices(conn: &Connection, username: &str) -> Result<Vec<(i64, i64, i64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT s.id, s.user_id, s.node_id FROM slices s JOIN users u ON u.id = s.user_id
          WHERE u.username = ?1 AND s.state IN ('running', 'stopped') AND s.node_id IS NOT NULL",
    )?;
    let rows = stmt
        .query_map([username], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// What keeps a user's gateway login from being made (None: nothing).
pub fn set_problem(conn: &Connection, username: &str, problem: Option<&str>) -> Result<()> {
    conn.prepare_cached("UPDATE users SET gateway_problem = ?2 WHERE username = ?1")?
        .execute(params![username, problem])?;
    Ok(())
}

pub fn problem(conn: &Connection, user_id: i64) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT gateway_problem FROM users WHERE id = ?1")?
        .query_row([user_id], |r| r.get::<_, Option<String>>(0))
        .optional()?
        .flatten())
}

/// Clears the gateway problem of every user not among `served`.
pub fn clear_problems_except<'a>(
    conn: &Connection,
    served: impl Iterator<Item = &'a String>,
) -> Result<()> {
    let served: std::collections::HashSet<&String> = served.collect();
    let mut stmt =
        conn.prepare_cached("SELECT username FROM users WHERE gateway_problem IS NOT NULL")?;
    let stale: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?
        .into_iter()
        .filter(|u| !served.contains(u))
        .collect();
    for u in stale {
        set_problem(conn, &u, None)?;
    }
    Ok(())
}

/// What a web request for a slice name reaches: the slice the gateway's map gives that name
/// (the running one made last, as the map does), its state and address.
#[derive(Debug, Clone)]
pub struct WebTarget {
    pub slice_id: i64,
    pub ip: String,
    pub state: String,
    /// Its node runs the simulator.
    pub simulated: bool,
}

pub fn web_target(conn: &Connection, subdomain: &str) -> Result<Option<WebTarget>> {
    Ok(conn
        .prepare_cached(
            "SELECT s.id, s.ip, s.state, coalesce(json_extract(n.info, '$.simulated'), 0)
               FROM slices s JOIN users u ON u.id = s.user_id JOIN nodes n ON n.id = s.node_id
              WHERE s.subdomain = ?1 AND s.state IN ('provisioning', 'running', 'stopped')
                AND s.ip IS NOT NULL AND u.disabled_at IS NULL
              ORDER BY (s.state = 'running') DESC, s.id DESC LIMIT 1",
        )?
        .query_row([subdomain], |r| {
            Ok(WebTarget {
                slice_id: r.get(0)?,
                ip: r.get(1)?,
                state: r.get(2)?,
                simulated: r.get::<_, i64>(3)? != 0,
            })
        })
        .optional()?)
}

/// What a login name at the built-in SSH gateway reaches: the live slice of that name, its
/// owner (not disabled), its state, address and node kind.
#[derive(Debug, Clone)]
pub struct LoginTarget {
    pub slice_id: i64,
    pub name: String,
    pub user_id: i64,
    pub username: String,
    pub state: String,
    pub ip: Option<String>,
    pub simulated: bool,
    /// The slice's SSH host key as first seen (`ALGO BASE64`), when it has been.
    pub host_key: Option<String>,
}

pub fn login_target(conn: &Connection, name: &str) -> Result<Option<LoginTarget>> {
    Ok(conn
        .prepare_cached(
            "SELECT s.id, s.subdomain, u.id, u.username, s.state, s.ip,
                    coalesce(json_extract(n.info, '$.simulated'), 0), s.host_key
               FROM slices s JOIN users u ON u.id = s.user_id LEFT JOIN nodes n ON n.id = s.node_id
              WHERE s.subdomain = ?1 AND s.state NOT IN ('denied', 'destroyed')
                AND u.disabled_at IS NULL",
        )?
        .query_row([name], |r| {
            Ok(LoginTarget {
                slice_id: r.get(0)?,
                name: r.get(1)?,
                user_id: r.get(2)?,
                username: r.get(3)?,
                state: r.get(4)?,
                ip: r.get(5)?,
                simulated: r.get::<_, i64>(6)? != 0,
                host_key: r.get(7)?,
            })
        })
        .optional()?)
}

/// What the login name of slice `slice_id` reaches (None: it is gone).
pub fn login_target_of(conn: &Connection, slice_id: i64) -> Result<Option<LoginTarget>> {
    let name: Option<String> = conn
        .prepare_cached(
            "SELECT subdomain FROM slices WHERE id = ?1 AND state NOT IN ('denied', 'destroyed')",
        )?
        .query_row([slice_id], |r| r.get(0))
        .optional()?;
    match name {
        Some(n) => login_target(conn, &n),
        None => Ok(None),
    }
}

/// Whether the user has registered the key with this SHA256 fingerprint.
pub fn has_key(conn: &Connection, user_id: i64, fingerprint: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM ssh_keys WHERE user_id = ?1 AND fingerprint = ?2")?
        .exists(params![user_id, fingerprint])?)
}

/// Keeps the host key a slice showed first (never replaces one: a different key later is
/// refused until the slice is made anew, which clears it).
pub fn pin_host_key(conn: &Connection, slice_id: i64, key: &str) -> Result<()> {
    conn.prepare_cached("UPDATE slices SET host_key = ?2 WHERE id = ?1 AND host_key IS NULL")?
        .execute(params![slice_id, key])?;
    Ok(())
}

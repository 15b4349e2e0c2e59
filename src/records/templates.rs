//! The `templates` table: the OS templates the master offers students.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::domain::TemplateName;
use crate::error::Result;
use crate::store::now;

/// Registers an OS template the master offers.
pub fn add_template(conn: &Connection, name: &TemplateName, description: &str) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO templates (name, description, created_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO UPDATE SET description = excluded.description",
    )?
    .execute(params![name.as_str(), description, now()])?;
    Ok(())
}

/// Stops offering a template; whether it was offered. Slices made from it keep running, and
/// requests already made for it are still decided and made.
pub fn withdraw_template(conn: &Connection, name: &TemplateName) -> Result<bool> {
    Ok(conn
        .prepare_cached("DELETE FROM templates WHERE name = ?1")?
        .execute([name.as_str()])?
        > 0)
}

/// A template students may choose.
#[derive(Debug, Clone, Serialize)]
pub struct TemplateChoice {
    pub name: String,
    pub description: String,
}

pub fn template_choices(conn: &Connection) -> Result<Vec<TemplateChoice>> {
    let mut stmt = conn.prepare_cached("SELECT name, description FROM templates ORDER BY name")?;
    let rows = stmt
        .query_map([], |r| {
            Ok(TemplateChoice {
                name: r.get(0)?,
                description: r.get(1)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Whether the master offers this template.
pub fn offered(conn: &Connection, name: &TemplateName) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM templates WHERE name = ?1")?
        .query_row([name.as_str()], |_| Ok(()))
        .optional()?
        .is_some())
}

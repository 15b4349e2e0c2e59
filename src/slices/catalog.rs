//! What a slice can be made of: templates and plans, and the limits a plan puts in force.

use rusqlite::{params, Connection};
use serde::Serialize;

use crate::domain::{Limits, TemplateName};
use crate::error::Result;
use crate::store::now;

/// The limits of a plan.
pub fn plan_limits(conn: &Connection, plan_id: i64) -> Result<Limits> {
    let l = conn.query_row(
        "SELECT memory_mb, memory_limit_mb, processes, disk_mb, cpu_shares FROM plans WHERE id = ?1",
        [plan_id],
        |r| {
            Ok(Limits {
                memory_mb: r.get(0)?,
                memory_limit_mb: r.get(1)?,
                processes: r.get(2)?,
                disk_mb: r.get(3)?,
                cpu_shares: r.get(4)?,
            })
        },
    )?;
    Ok(l.check()?)
}

pub fn default_plan(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row(
        "SELECT id FROM plans ORDER BY is_default DESC, id LIMIT 1",
        [],
        |r| r.get(0),
    )?)
}

/// Registers an OS template the master offers.
pub fn add_template(conn: &Connection, name: &TemplateName, description: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO templates (name, description, created_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO UPDATE SET description = excluded.description",
        params![name.as_str(), description, now()],
    )?;
    Ok(())
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

/// A plan students may choose.
#[derive(Debug, Clone, Serialize)]
pub struct PlanChoice {
    pub id: i64,
    pub name: String,
    pub limits: Limits,
    pub is_default: bool,
}

pub fn plan_choices(conn: &Connection) -> Result<Vec<PlanChoice>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, name, memory_mb, memory_limit_mb, processes, disk_mb, cpu_shares, is_default
         FROM plans ORDER BY is_default DESC, memory_mb, name",
    )?;
    let rows = stmt
        .query_map([], |r| {
            Ok(PlanChoice {
                id: r.get(0)?,
                name: r.get(1)?,
                limits: Limits {
                    memory_mb: r.get(2)?,
                    memory_limit_mb: r.get(3)?,
                    processes: r.get(4)?,
                    disk_mb: r.get(5)?,
                    cpu_shares: r.get(6)?,
                },
                is_default: r.get(7)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

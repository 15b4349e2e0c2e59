//! Packs the archive of a slice's /home on its node (`export_home`) and records its size and
//! SHA-256, or why it could not be packed.

use crate::domain::VeId;
use crate::jobs::env::JobEnv;
use crate::jobs::queue::Job;
use crate::jobs::{judge, Outcome};
use crate::records::exports;
use crate::slave_link::Command;

pub async fn run(env: &JobEnv, job: &Job) -> Outcome {
    let Some(slice_id) = job.slice_id else {
        return Outcome::Fail("no slice".into());
    };
    let (slice, node) = step!(env.slice_and_node(slice_id).await);
    let asked = step!(env.read(move |c| exports::get(c, slice_id)).await);
    let (Some(node), Some(veid), Some(asked)) = (node, slice.veid, asked) else {
        return Outcome::Done; // destroyed or moved meanwhile: nothing to pack
    };
    if asked.state != "packing" || asked.node_id != node.id || asked.veid != veid {
        return Outcome::Done;
    }
    let id = step!(VeId::new(veid as u64).map_err(|e| Outcome::Fail(e.message)));
    let cmd = Command::ExportHome(id);
    let r = env
        .links
        .call(&node, Some(job.id), Some(slice_id), &cmd)
        .await;
    let outcome = match r {
        // The host's tar failed: trying again packs the same files the same way.
        Ok(reply) if reply.code == crate::slave_link::code::FAILED => {
            Outcome::Fail(format!("export_home: {}", reply.text()))
        }
        r => match judge(cmd.name(), r) {
            Ok(reply) => {
                let (size, sha) = match made(&reply) {
                    Ok(m) => m,
                    Err(o) => return o,
                };
                let at = crate::clock::now();
                step!(
                    env.db(move |db| db
                        .write(|tx| { exports::set_ready(tx, slice_id, size, sha.as_str(), at) }))
                        .await
                );
                return Outcome::Done;
            }
            Err(o) => o,
        },
    };
    if let Some(why) = env.gives_up(job, &outcome) {
        step!(
            env.db(move |db| db.write(|tx| exports::set_failed(tx, slice_id, &why)))
                .await
        );
    }
    outcome
}

/// The size and SHA-256 of the archive an `export_home` answer says it made.
pub(super) fn made(
    reply: &crate::slave_link::Reply,
) -> Result<(i64, crate::templates::Sha256Hex), Outcome> {
    let made = reply.returned.get(1);
    let size = made.and_then(|m| m["size"].as_i64());
    let sha = made
        .and_then(|m| m["sha256"].as_str())
        .and_then(|s| crate::templates::Sha256Hex::parse(s).ok());
    match (size, sha) {
        (Some(size), Some(sha)) => Ok((size, sha)),
        _ => Err(Outcome::Fail(format!(
            "export_home: an answer without size and sha256: {}",
            reply.text()
        ))),
    }
}

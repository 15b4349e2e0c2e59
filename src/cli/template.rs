//! `slices template`: the OS templates students can choose.

use clap::Subcommand;

use super::ConfigArgs;
use crate::context::Context;

#[derive(Subcommand, Debug)]
pub enum TemplateCommand {
    /// Offer a template (NAME.tar.gz in the os-templates folder) with a description.
    Add {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        cfg: ConfigArgs,
    },
    /// The templates offered, and whether the master has each file.
    List {
        #[command(flatten)]
        cfg: ConfigArgs,
    },
}

pub fn run(what: TemplateCommand) -> anyhow::Result<()> {
    let e = |e: crate::error::Error| anyhow::anyhow!("{e}");
    match what {
        TemplateCommand::Add {
            name,
            description,
            cfg,
        } => {
            let name = crate::domain::TemplateName::parse(&name)
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            let description = crate::mail::one_line(&description);
            let ctx = Context::open_existing(cfg.load(&[])?)?;
            ctx.db
                .write(|tx| crate::ops::slices::add_template(tx, &name, &description))
                .map_err(e)?;
            let file = ctx.config.os_templates_dir().join(name.file_name());
            println!("Offering {name}.");
            if !file.is_file() {
                println!(
                    "Put the file at {} so nodes can be sent it (slices node sync-templates).",
                    file.display()
                );
            }
            Ok(())
        }
        TemplateCommand::List { cfg } => {
            let ctx = Context::open_existing(cfg.load(&[])?)?;
            let all = ctx
                .db
                .read(crate::ops::slices::template_choices)
                .map_err(e)?;
            if all.is_empty() {
                println!("No templates offered yet: slices template add NAME --description TEXT");
            }
            for t in all {
                let here = ctx
                    .config
                    .os_templates_dir()
                    .join(format!("{}.tar.gz", t.name))
                    .is_file();
                println!(
                    "{}\t{}\t{}",
                    t.name,
                    if here { "file present" } else { "no file" },
                    t.description
                );
            }
            Ok(())
        }
    }
}

//! `skiff images import|ls|rm`: the embedded runtime's image store, used
//! directly on disk (no daemon needed), as `ctr images import` does.

use anyhow::Result;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum ImagesCmd {
    /// Import an OCI-layout or docker-archive tarball.
    Import {
        file: PathBuf,
        /// Name the image (when the archive does not).
        #[arg(long)]
        tag: Option<String>,
        #[arg(long, default_value = "/var/lib/skiff/runtime")]
        runtime_root: PathBuf,
    },
    /// List images.
    Ls {
        #[arg(long, default_value = "/var/lib/skiff/runtime")]
        runtime_root: PathBuf,
    },
    /// Remove an image by name or ID.
    Rm {
        name: String,
        #[arg(long, default_value = "/var/lib/skiff/runtime")]
        runtime_root: PathBuf,
    },
}

pub fn run(cmd: ImagesCmd) -> Result<()> {
    match cmd {
        ImagesCmd::Import { file, tag, runtime_root } => {
            let r = skiff_runtime::images::Images::new(&runtime_root)?.import(&file, tag.as_deref())?;
            println!("{} {}", r.id, r.tags.join(","));
        }
        ImagesCmd::Ls { runtime_root } => {
            for r in skiff_runtime::images::Images::new(&runtime_root)?.list() {
                println!("{}\t{}\t{}", r.tags.join(","), &r.id[..19.min(r.id.len())], r.size);
            }
        }
        ImagesCmd::Rm { name, runtime_root } => skiff_runtime::images::Images::new(&runtime_root)?.remove(&name)?,
    }
    Ok(())
}

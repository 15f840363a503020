//! `vagan metrics`: the command-line surface of the metrics module.
use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum MetricsCommand {
    /// Fréchet Inception distance between two image sets.
    Fid(MetricsArgs),
    /// Kernel Inception distance between two image sets.
    Kid(MetricsArgs),
}

#[derive(Args)]
pub struct MetricsArgs {
    /// Real images: a folder or a dataset file.
    #[arg(long)]
    pub real: PathBuf,
    /// Fake images: a folder or a snapshot.
    #[arg(long)]
    pub fake: PathBuf,
}

pub fn run(command: MetricsCommand) -> Result<()> {
    let _ = command;
    bail!("vagan metrics is being implemented")
}

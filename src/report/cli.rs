//! `vagan report`: a run's HTML report, or several runs' FID curves overlaid.
use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// A run directory or a progressive schedule root: writes its report.html (a root's stages
    /// get theirs too). With --compare: the runs to overlay, at least two.
    #[arg(required = true, num_args = 1.., value_name = "RUN_DIR")]
    pub runs: Vec<PathBuf>,
    /// Overlay the metric curves of the given runs (e.g. a baseline and a vision-aided run) on
    /// one page instead.
    #[arg(long)]
    pub compare: bool,
    /// Where --compare writes its page.
    #[arg(long, default_value = "report-compare.html", requires = "compare")]
    pub out: PathBuf,
}

pub fn run(args: ReportArgs) -> Result<()> {
    let page = if args.compare {
        if args.runs.len() < 2 {
            bail!("--compare needs at least two run directories");
        }
        super::write_comparison(&args.runs, &args.out)?
    } else {
        match args.runs.as_slice() {
            [one] => super::write_report(one)?,
            _ => bail!(
                "one run directory at a time (or --compare to overlay {} runs)",
                args.runs.len()
            ),
        }
    };
    println!("{}", page.display());
    Ok(())
}

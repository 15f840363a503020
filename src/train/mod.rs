//! The StyleGAN2 training loop: non-saturating logistic loss, lazy R1, path-length
//! regularisation, generator EMA, DiffAugment, and a run directory a user can read.
//!
//! Run directory: `training_options.json`, `stats.jsonl` (one line per tick), `reals.png`,
//! `fakes_init.png`, `fakes<kimg>.png` and `network-snapshot-<kimg>.safetensors` every
//! `snap` ticks, and `log.txt`.
pub mod optim;
pub mod progressive;
pub mod snapshot;

use crate::augment::Policy;
use crate::data::{Dataset, Sampler};
use crate::nets::{Discriminator, DiscriminatorConfig, Generator, GeneratorConfig, NoiseMode};
use crate::util::derive_seed;
use crate::util::use_channels_last;
use crate::vision_aided::{self as va, parse_loss_types, Augment, HeadVariant, Target};
use crate::weights::cache::Cache;
use anyhow::{bail, ensure, Context, Result};
use optim::Adam;
use serde::{Deserialize, Serialize};
use snapshot::{named, Snapshot, SnapshotMeta, TrainState};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// Resolved training options, as written to `training_options.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainOptions {
    /// The dataset file.
    pub data: PathBuf,
    pub kimg: f64,
    pub batch: i64,
    /// Images per tick, in thousands: logs, and snapshots every `snap` ticks.
    pub tick_kimg: f64,
    pub snap: u64,
    pub seed: u64,
    pub cbase: i64,
    pub cmax: i64,
    pub z_dim: i64,
    pub w_dim: i64,
    pub map_layers: i64,
    pub glr: f64,
    pub dlr: f64,
    /// R1 weight γ.
    pub gamma: f64,
    /// Path-length regularisation weight; 0 turns it off.
    pub pl_weight: f64,
    pub style_mixing: f64,
    /// Half-life of the generator EMA in kimg, and its ramp-up (None: no ramp-up).
    pub ema_kimg: f64,
    pub ema_rampup: Option<f64>,
    pub mbstd_group: i64,
    /// Train on the dataset plus its horizontal mirror images.
    pub mirror: bool,
    /// DiffAugment policy for the discriminator.
    pub diffaug: String,
    /// Side of the square grid of samples written at every snapshot.
    pub grid: i64,
    /// The vision-aided ensemble added to the discriminator (None: the base GAN alone).
    pub cv: Option<CvOptions>,
    /// Where this run stands in a progressive schedule (None for a plain run).
    #[serde(default)]
    pub stage: Option<progressive::Stage>,
    /// Metrics computed at every snapshot, e.g. `fid5k` (FID of 5,000 G_ema images against the
    /// whole dataset, clean-fid's recipe); the first one picks the best snapshot.
    #[serde(default)]
    pub metrics: Vec<String>,
}

/// A metric of `--metrics`: FID of `num` generated images against every real image.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSpec {
    pub name: String,
    pub num: usize,
}

impl FromStr for MetricSpec {
    type Err = anyhow::Error;
    /// `fid<N>k` or `fid<N>k_full` (the whole dataset is the real set either way), or
    /// `fid<N>` for N images.
    fn from_str(s: &str) -> Result<Self> {
        let count = s
            .strip_prefix("fid")
            .map(|r| r.strip_suffix("_full").unwrap_or(r));
        let num = count.and_then(|c| match c.strip_suffix('k') {
            Some(k) => k.parse::<usize>().ok().map(|k| k * 1000),
            None => c.parse::<usize>().ok(),
        });
        match num {
            Some(num) if num >= 2 => Ok(MetricSpec {
                name: s.to_string(),
                num,
            }),
            _ => bail!(
                "--metrics: unknown metric '{s}' (expected e.g. fid5k, fid10k_full or fid500)"
            ),
        }
    }
}

/// The vision-aided ensemble of a run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CvOptions {
    /// '+'-joined bank members, e.g. `efficientnet_lite0+clip_vit_b32`.
    pub bank: String,
    /// '+'-joined loss types, one per network.
    pub loss: String,
    pub head: HeadVariant,
    pub augment: Augment,
    /// The vision-aided loss weight is 0 before this many thousand images, 1 after.
    pub warmup_kimg: f64,
}

impl CvOptions {
    pub fn networks(&self) -> Vec<&str> {
        self.bank.split('+').map(str::trim).collect()
    }

    /// The reference's default loss for a network (§3): `multilevel_sigmoid` for CLIP and
    /// DINO, `sigmoid` for the others, label-smoothed (`_s`) under DiffAugment as the
    /// reference's progressive driver does.
    pub fn default_loss(network: &str, augment: &Augment) -> String {
        let base = if network.starts_with("clip") || network.starts_with("dino") {
            "multilevel_sigmoid"
        } else {
            "sigmoid"
        };
        let smooth = matches!(augment, Augment::DiffAugment { .. });
        format!("{base}{}", if smooth { "_s" } else { "" })
    }

    fn validate(&self) -> Result<()> {
        let losses = parse_loss_types(&self.loss).context("--cv-loss")?;
        let networks = self.networks();
        ensure!(
            networks.len() == losses.len(),
            "--cv {} names {} networks but --cv-loss {} gives {} loss types",
            self.bank,
            networks.len(),
            self.loss,
            losses.len()
        );
        for n in &networks {
            ensure!(
                crate::backbones::bank::MEMBERS.contains(n),
                "--cv: unknown network '{n}' (the bank: {})",
                crate::backbones::bank::MEMBERS.join(", ")
            );
        }
        ensure!(
            self.warmup_kimg >= 0.0,
            "--cv-warmup-kimg {}: must not be negative",
            self.warmup_kimg
        );
        Ok(())
    }
}

pub const G_REG_INTERVAL: u64 = 4;
pub const D_REG_INTERVAL: u64 = 16;

impl TrainOptions {
    /// StyleGAN2-ADA's automatic R1 weight: 0.0002 · resolution² / batch.
    pub fn auto_gamma(resolution: i64, batch: i64) -> f64 {
        0.0002 * (resolution * resolution) as f64 / batch as f64
    }

    /// StyleGAN2-ADA's automatic EMA half-life: batch · 10 / 32 kimg.
    pub fn auto_ema_kimg(batch: i64) -> f64 {
        batch as f64 * 10.0 / 32.0
    }

    pub fn validate(&self) -> Result<()> {
        ensure!(
            self.batch >= 1,
            "--batch {}: must be at least 1",
            self.batch
        );
        ensure!(self.kimg > 0.0, "--kimg {}: must be positive", self.kimg);
        ensure!(
            self.tick_kimg > 0.0,
            "--tick {}: must be positive",
            self.tick_kimg
        );
        ensure!(self.snap >= 1, "--snap {}: must be at least 1", self.snap);
        ensure!(
            self.cbase > 0 && self.cmax > 0,
            "--cbase/--cmax must be positive"
        );
        ensure!(
            self.map_layers >= 1,
            "--map {}: at least one mapping layer",
            self.map_layers
        );
        ensure!(
            (0.0..=1.0).contains(&self.style_mixing),
            "--style-mixing {}: a probability",
            self.style_mixing
        );
        self.diffaug.parse::<Policy>().context("--diffaug")?;
        if let Some(cv) = &self.cv {
            cv.validate()?;
        }
        for m in &self.metrics {
            m.parse::<MetricSpec>()?;
        }
        Ok(())
    }

    pub fn generator_config(&self, resolution: i64, channels: i64) -> GeneratorConfig {
        GeneratorConfig {
            z_dim: self.z_dim,
            w_dim: self.w_dim,
            mapping_layers: self.map_layers,
            resolution,
            img_channels: channels,
            channel_base: self.cbase,
            channel_max: self.cmax,
        }
    }

    pub fn discriminator_config(&self, resolution: i64, channels: i64) -> DiscriminatorConfig {
        DiscriminatorConfig {
            resolution,
            img_channels: channels,
            channel_base: self.cbase,
            channel_max: self.cmax,
            mbstd_group: self.mbstd_group,
        }
    }
}

/// Means of the values logged during one tick.
#[derive(Default)]
pub struct TickStats(BTreeMap<String, (f64, u64)>);

impl TickStats {
    fn add(&mut self, name: impl Into<String>, v: f64) {
        let e = self.0.entry(name.into()).or_insert((0.0, 0));
        e.0 += v;
        e.1 += 1;
    }
    fn means(&self) -> impl Iterator<Item = (&str, f64)> + '_ {
        self.0.iter().map(|(k, (s, n))| (k.as_str(), s / *n as f64))
    }
    fn mean(&self, name: &str) -> f64 {
        self.0.get(name).map_or(0.0, |(s, n)| s / *n as f64)
    }
}

/// A scalar loss as f64; a NaN or inf stops the run.
fn checked(loss: &Tensor, what: &str, state: &TrainState) -> Result<f64> {
    let v = loss.double_value(&[]);
    if !v.is_finite() {
        bail!(
            "{what} is {v} at step {} ({:.3} kimg); training stopped",
            state.batch_idx,
            state.cur_nimg as f64 / 1000.0
        );
    }
    Ok(v)
}

pub struct Trainer {
    pub opts: TrainOptions,
    pub run_dir: PathBuf,
    pub device: Device,
    dataset: Dataset,
    sampler: Sampler,
    policy: Policy,
    vs_g: VarStore,
    g: Generator,
    vs_d: VarStore,
    d: Discriminator,
    vs_ema: VarStore,
    g_ema: Generator,
    opt_g: Adam,
    opt_d: Adam,
    /// The vision-aided ensemble and its heads' optimiser.
    cv: Option<(va::Discriminator, Adam)>,
    /// The metrics' evaluators, loaded at the first snapshot that needs them.
    evaluators: Vec<(MetricSpec, crate::metrics::FidEvaluator)>,
    pub state: TrainState,
    grid_z: Tensor,
}

impl Trainer {
    /// A fresh run in `run_dir` (created), or the continuation of `resume` (a snapshot file).
    pub fn new(
        opts: TrainOptions,
        run_dir: &Path,
        device: Device,
        resume: Option<&Path>,
    ) -> Result<Self> {
        opts.validate()?;
        let dataset = Dataset::open(&opts.data)?;
        let (res, ch) = (dataset.header.resolution, dataset.header.channels);
        ensure!(
            res >= 4 && (res & (res - 1)) == 0,
            "{}: resolution {res} is not a power of two ≥ 4 (convert with `vagan dataset --resolution`)",
            opts.data.display()
        );
        let policy: Policy = opts.diffaug.parse()?;
        tch::manual_seed(opts.seed as i64);
        let g_cfg = opts.generator_config(res, ch);
        let d_cfg = opts.discriminator_config(res, ch);
        let vs_g = VarStore::new(device);
        let g = Generator::new(vs_g.root(), &g_cfg);
        let vs_d = VarStore::new(device);
        let d = Discriminator::new(vs_d.root(), &d_cfg);
        let mut vs_ema = VarStore::new(device);
        let g_ema = Generator::new(vs_ema.root(), &g_cfg);
        vs_ema.copy(&vs_g)?;
        vs_ema.freeze();
        for vs in [&vs_g, &vs_d, &vs_ema] {
            use_channels_last(vs);
        }
        let betas = (0.0, 0.99);
        let g_reg = (opts.pl_weight > 0.0).then_some(G_REG_INTERVAL as i64);
        let d_reg = (opts.gamma > 0.0).then_some(D_REG_INTERVAL as i64);
        let mut opt_g = Adam::lazy(&vs_g, opts.glr, betas, 1e-8, g_reg);
        let mut opt_d = Adam::lazy(&vs_d, opts.dlr, betas, 1e-8, d_reg);
        let mut state = TrainState {
            cur_nimg: 0,
            cur_tick: 0,
            batch_idx: 0,
            pl_mean: 0.0,
            total_time_s: 0.0,
        };
        let mut cv = match &opts.cv {
            Some(c) => Some(build_ensemble(&opts, c, d_reg, device)?),
            None => None,
        };
        if let Some(path) = resume {
            let snap = Snapshot::load(path)?;
            ensure!(
                snap.meta.g == g_cfg && snap.meta.d == d_cfg,
                "{}: the snapshot's networks differ from these options (dataset or architecture changed)",
                path.display()
            );
            snap.restore("G", &vs_g)?;
            snap.restore("D", &vs_d)?;
            snap.restore("G_ema", &vs_ema)?;
            state = snap.meta.state.clone();
            opt_g.load_state(&|k| snap.get(&format!("opt_G.{k}")), |_| false)?;
            opt_d.load_state(&|k| snap.get(&format!("opt_D.{k}")), |_| false)?;
            match &mut cv {
                Some((ens, opt_cv)) => {
                    // Networks added since the snapshot keep their fresh heads and optimiser state.
                    let saved: Vec<&str> = snap.meta.cv.iter().map(|m| m.name.as_str()).collect();
                    let fresh =
                        |name: &str| !saved.iter().any(|s| name.starts_with(&format!("{s}.")));
                    snap.restore_partial("CV", ens.heads(), fresh)?;
                    opt_cv.load_state(&|k| snap.get(&format!("opt_CV.{k}")), fresh)?;
                    ens.restore_state(&snap.meta.cv)?;
                }
                None => ensure!(
                    snap.meta.cv.is_empty(),
                    "{}: the snapshot has vision-aided networks; resume it with its options",
                    path.display()
                ),
            }
        }
        let sampler = Sampler::new(dataset.len(), opts.mirror, opts.seed);
        // Fixed latents for the sample grids, drawn from their own seed.
        tch::manual_seed(derive_seed(opts.seed, u64::MAX) as i64);
        let grid_z = Tensor::randn(
            [opts.grid * opts.grid, g_cfg.z_dim],
            (Kind::Float, Device::Cpu),
        )
        .to_device(device);
        std::fs::create_dir_all(run_dir)
            .with_context(|| format!("cannot create {}", run_dir.display()))?;
        Ok(Self {
            opts,
            run_dir: run_dir.to_path_buf(),
            device,
            dataset,
            sampler,
            policy,
            vs_g,
            g,
            vs_d,
            d,
            vs_ema,
            g_ema,
            opt_g,
            opt_d,
            cv,
            evaluators: Vec::new(),
            state,
            grid_z,
        })
    }

    fn aug(&self, x: &Tensor) -> Tensor {
        self.policy.apply(x)
    }

    /// Generator forward for training: random noise, style mixing, w_avg tracking.
    fn run_g(&self, z: &Tensor) -> (Tensor, Tensor) {
        let mut ws = self.g.map(z, 1.0);
        self.g.update_w_avg(&ws);
        if self.opts.style_mixing > 0.0 {
            let num_ws = ws.size()[1];
            let cutoff =
                Tensor::randint_low(1, num_ws, [1], (Kind::Int64, Device::Cpu)).int64_value(&[0]);
            let mix = Tensor::rand([1], (Kind::Float, Device::Cpu)).double_value(&[0])
                < self.opts.style_mixing;
            if mix {
                let ws2 = self.g.map(&Tensor::randn_like(z), 1.0);
                ws = Tensor::cat(
                    &[
                        ws.narrow(1, 0, cutoff),
                        ws2.narrow(1, cutoff, num_ws - cutoff),
                    ],
                    1,
                );
            }
        }
        (self.g.synthesis(&ws, NoiseMode::Random), ws)
    }

    fn latents(&self, n: i64) -> Tensor {
        Tensor::randn([n, self.g.cfg.z_dim], (Kind::Float, self.device))
    }

    /// One minibatch: G main, G path-length (every 4), D main, D R1 (every 16), EMA.
    pub fn step(&mut self, stats: &mut TickStats) -> Result<()> {
        let s = &self.state;
        tch::manual_seed(derive_seed(self.opts.seed, s.batch_idx) as i64);
        let batch = self.opts.batch;
        let items = self.sampler.take(s.cur_nimg, batch as usize);
        let real = self.dataset.batch(&items, self.device);

        // G main: non-saturating logistic loss.
        self.vs_d.freeze();
        let (fake, _) = self.run_g(&self.latents(batch));
        let fake_logits = self.d.forward(&self.aug(&fake));
        let mut loss_g = fake_logits.neg().softplus().mean(None::<Kind>);
        stats.add(
            "loss_G",
            checked(&loss_g, "the generator loss", &self.state)?,
        );
        let cv_on = self.cv_active();
        if let Some((ens, _)) = self.cv.as_mut().filter(|_| cv_on) {
            let l = ens.loss(&fake, Target::Generator)?;
            stats.add(
                "loss_G_cv",
                checked(&l, "the vision-aided generator loss", &self.state)?,
            );
            loss_g += l;
        }
        self.opt_g.zero_grad();
        loss_g.backward();
        self.opt_g.step();

        // G regularisation: path-length penalty on half a batch, weighted by the interval.
        if self.opts.pl_weight > 0.0 && self.state.batch_idx % G_REG_INTERVAL == 0 {
            let n = (batch / 2).max(1);
            let (img, ws) = self.run_g(&self.latents(n));
            let (h, w) = (img.size()[2], img.size()[3]);
            let noise = img.randn_like() / ((h * w) as f64).sqrt();
            let grads =
                Tensor::run_backward(&[(&img * &noise).sum(None::<Kind>)], &[&ws], true, true);
            let lengths = grads[0]
                .square()
                .sum_dim_intlist(2, false, None::<Kind>)
                .mean_dim(1, false, None::<Kind>)
                .sqrt();
            let pl_mean = self.state.pl_mean
                + (lengths.mean(None::<Kind>).double_value(&[]) - self.state.pl_mean) * 0.01;
            let penalty = (&lengths - pl_mean).square();
            let loss = penalty.mean(None::<Kind>) * (self.opts.pl_weight * G_REG_INTERVAL as f64);
            stats.add(
                "pl_penalty",
                checked(
                    &penalty.mean(None::<Kind>),
                    "the path-length penalty",
                    &self.state,
                )?,
            );
            self.state.pl_mean = pl_mean;
            self.opt_g.zero_grad();
            loss.backward();
            self.opt_g.step();
        }

        // D main: fakes (G frozen, no graph) and reals.
        self.vs_d.unfreeze();
        let fake = tch::no_grad(|| self.run_g(&self.latents(batch)).0);
        let fake_logits = self.d.forward(&self.aug(&fake));
        let real_logits = self.d.forward(&self.aug(&real));
        let loss_d = fake_logits.softplus().mean(None::<Kind>)
            + real_logits.neg().softplus().mean(None::<Kind>);
        stats.add(
            "loss_D",
            checked(&loss_d, "the discriminator loss", &self.state)?,
        );
        stats.add(
            "score_real",
            real_logits.mean(None::<Kind>).double_value(&[]),
        );
        stats.add(
            "score_fake",
            fake_logits.mean(None::<Kind>).double_value(&[]),
        );
        let loss_d = match self.cv.as_mut().filter(|_| cv_on) {
            Some((ens, opt_cv)) => {
                let l = ens.loss(&fake, Target::Fake)? + ens.loss(&real, Target::Real)?;
                stats.add(
                    "loss_D_cv",
                    checked(&l, "the vision-aided discriminator loss", &self.state)?,
                );
                opt_cv.zero_grad();
                loss_d + l
            }
            None => loss_d,
        };
        self.opt_d.zero_grad();
        loss_d.backward();
        self.opt_d.step();
        if let Some((ens, opt_cv)) = self.cv.as_mut().filter(|_| cv_on) {
            opt_cv.step();
            if self.state.batch_idx % va::ensemble::ADA_INTERVAL == 0 {
                ens.adjust_ada(batch as u64 * va::ensemble::ADA_INTERVAL);
            }
        }

        // D regularisation: lazy R1 on the reals, weighted by the interval.
        if self.opts.gamma > 0.0 && self.state.batch_idx % D_REG_INTERVAL == 0 {
            let penalty = r1_penalty(&self.d, &self.policy, &real);
            let loss = penalty.mean(None::<Kind>) * (self.opts.gamma / 2.0 * D_REG_INTERVAL as f64);
            stats.add(
                "r1_penalty",
                checked(&penalty.mean(None::<Kind>), "the R1 penalty", &self.state)?,
            );
            self.opt_d.zero_grad();
            loss.backward();
            self.opt_d.step();
            // As the reference: the heads' optimiser also steps after the R1 phase, with zero
            // gradients (no R1 on the heads), which only decays its second moments.
            if let Some((_, opt_cv)) = self.cv.as_mut().filter(|_| cv_on) {
                opt_cv.zero_grad();
                opt_cv.step();
            }
        }

        self.update_ema();
        self.state.cur_nimg += batch as u64;
        self.state.batch_idx += 1;
        Ok(())
    }

    fn update_ema(&mut self) {
        let batch = self.opts.batch as f64;
        let mut ema_nimg = self.opts.ema_kimg * 1000.0;
        if let Some(r) = self.opts.ema_rampup {
            ema_nimg = ema_nimg.min(self.state.cur_nimg as f64 * r);
        }
        let beta = 0.5f64.powf(batch / ema_nimg.max(1e-8));
        let src = self.vs_g.variables();
        tch::no_grad(|| {
            for (name, mut e) in self.vs_ema.variables() {
                let p = &src[&name];
                if p.requires_grad() {
                    e.copy_(&p.lerp(&e, beta));
                } else {
                    e.copy_(p);
                }
            }
        });
    }

    fn meta(&self) -> SnapshotMeta {
        SnapshotMeta {
            format_version: snapshot::FORMAT_VERSION,
            options: self.opts.clone(),
            g: self.g.cfg.clone(),
            d: self.d.cfg.clone(),
            state: self.state.clone(),
            cv: self.cv.as_ref().map_or_else(Vec::new, |(e, _)| e.state()),
        }
    }

    pub fn save_snapshot(&self) -> Result<PathBuf> {
        let path = self.run_dir.join(snapshot::file_name(self.state.cur_nimg));
        let mut groups = vec![
            ("G", named(&self.vs_g)),
            ("D", named(&self.vs_d)),
            ("G_ema", named(&self.vs_ema)),
            ("opt_G", self.opt_g.state()),
            ("opt_D", self.opt_d.state()),
        ];
        if let Some((ens, opt_cv)) = &self.cv {
            groups.push(("CV", named(ens.heads())));
            groups.push(("opt_CV", opt_cv.state()));
        }
        Snapshot::save(&path, &self.meta(), &groups)?;
        Ok(path)
    }

    /// Whether the vision-aided loss counts at this step (λ = 1 after the warm-up).
    fn cv_active(&self) -> bool {
        self.opts
            .cv
            .as_ref()
            .is_some_and(|c| self.state.cur_nimg as f64 >= c.warmup_kimg * 1000.0)
    }

    /// Samples of G_ema for the fixed grid latents (constant noise).
    pub fn grid_fakes(&self) -> Tensor {
        tch::no_grad(|| {
            let chunks: Vec<Tensor> = self
                .grid_z
                .split(32, 0)
                .iter()
                .map(|z| self.g_ema.forward(z, 1.0, NoiseMode::Const))
                .collect();
            Tensor::cat(&chunks, 0)
        })
    }

    fn save_grid(&self, name: &str) -> Result<()> {
        crate::images::save_grid(&self.grid_fakes(), self.opts.grid, &self.run_dir.join(name))
    }

    fn save_reals(&self) -> Result<()> {
        let n = (self.opts.grid * self.opts.grid) as usize;
        let items = Sampler::new(self.dataset.len(), false, self.opts.seed).take(0, n);
        crate::images::save_grid(
            &self.dataset.batch(&items, Device::Cpu),
            self.opts.grid,
            &self.run_dir.join("reals.png"),
        )
    }

    /// Drops log lines written after the snapshot we resume from, so the log matches the run.
    fn truncate_stats(&self) -> Result<()> {
        self.truncate_jsonl("stats.jsonl")
    }

    /// Keeps the lines of a run's jsonl file whose `nimg` is at most the current count.
    fn truncate_jsonl(&self, name: &str) -> Result<()> {
        let path = self.run_dir.join(name);
        let kept: String = read_jsonl(&path)
            .into_iter()
            .filter(|v| v["nimg"].as_u64().is_some_and(|n| n <= self.state.cur_nimg))
            .map(|v| format!("{v}\n"))
            .collect();
        if !path.exists() {
            return Ok(());
        }
        crate::util::write_atomic(&path, |f| Ok(f.write_all(kept.as_bytes())?))
    }

    /// Makes `network-snapshot-best.safetensors` the best snapshot by the first metric among
    /// those measured up to now (after a resume from an earlier snapshot, the copy may come
    /// from the discarded continuation).
    fn restore_best(&self) -> Result<()> {
        let best_path = self.run_dir.join(snapshot::BEST);
        let Some(metric) = self.opts.metrics.first() else {
            return Ok(());
        };
        let best = read_jsonl(&self.run_dir.join(format!("metric-{metric}.jsonl")))
            .into_iter()
            .filter_map(|v| {
                Some((
                    v["results"][metric].as_f64()?,
                    v["snapshot"].as_str()?.to_string(),
                ))
            })
            .min_by(|a, b| a.0.total_cmp(&b.0));
        match best {
            Some((_, name)) if self.run_dir.join(&name).exists() => {
                let src = self.run_dir.join(name);
                crate::util::write_atomic(&best_path, |f| {
                    std::io::copy(&mut std::fs::File::open(&src)?, f)?;
                    Ok(())
                })
            }
            _ if best_path.exists() => Ok(std::fs::remove_file(&best_path)?),
            _ => Ok(()),
        }
    }

    /// Measures every `--metrics` entry on G_ema (image i from the latent of seed i, constant
    /// noise, truncation 1: what `vagan metrics fid --fake SNAPSHOT` measures), appends it to
    /// `metric-<name>.jsonl`, and copies the snapshot to `network-snapshot-best.safetensors`
    /// when the first metric improves on every earlier value. Returns log lines.
    fn evaluate_metrics(&mut self, snapshot: &Path) -> Result<Vec<String>> {
        let specs: Vec<MetricSpec> = self
            .opts
            .metrics
            .iter()
            .map(|m| m.parse())
            .collect::<Result<_>>()?;
        let mut lines = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            if !self.evaluators.iter().any(|(s, _)| s == spec) {
                let options = crate::metrics::MetricOptions {
                    device: self.device,
                    ..Default::default()
                };
                let evaluator = crate::metrics::FidEvaluator::open(&self.opts.data, None, &options)
                    .with_context(|| format!("--metrics {}", spec.name))?;
                self.evaluators.push((spec.clone(), evaluator));
            }
            let evaluator = &self.evaluators.iter().find(|(s, _)| s == spec).unwrap().1;
            let start = Instant::now();
            let mut next_seed = 0u64;
            let z_dim = self.g_ema.cfg.z_dim;
            let fid = evaluator.fid(spec.num, |n| {
                let z: Vec<Tensor> = (next_seed..next_seed + n as u64)
                    .map(|seed| crate::generate::latent(seed, z_dim))
                    .collect();
                next_seed += n as u64;
                let z = Tensor::cat(&z, 0).to_device(self.device);
                Ok(tch::no_grad(|| {
                    self.g_ema.forward(&z, 1.0, NoiseMode::Const)
                }))
            })?;
            let secs = start.elapsed().as_secs_f64();
            let path = self.run_dir.join(format!("metric-{}.jsonl", spec.name));
            let earlier: Vec<f64> = read_jsonl(&path)
                .iter()
                .filter_map(|v| v["results"][&spec.name].as_f64())
                .collect();
            let snapshot_name = snapshot
                .file_name()
                .map(|f| f.to_string_lossy().to_string());
            let line = serde_json::json!({
                "results": { &spec.name: fid },
                "metric": spec.name,
                "kimg": self.state.cur_nimg as f64 / 1000.0,
                "nimg": self.state.cur_nimg,
                "total_time": secs,
                "snapshot": snapshot_name,
                "timestamp": std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)?
                    .as_secs_f64(),
            });
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            writeln!(file, "{line}")?;
            let mut msg = format!("{} {fid:.4} ({secs:.1} s)", spec.name);
            if i == 0 && earlier.iter().all(|&e| fid < e) {
                let best = self.run_dir.join(snapshot::BEST);
                crate::util::write_atomic(&best, |f| {
                    std::io::copy(&mut std::fs::File::open(snapshot)?, f)?;
                    Ok(())
                })?;
                msg.push_str(&format!(", new best: {}", best.display()));
            }
            lines.push(msg);
        }
        Ok(lines)
    }

    /// Trains to `opts.kimg`, writing ticks, grids and snapshots. Returns the last snapshot.
    pub fn run(&mut self, progress: bool) -> Result<PathBuf> {
        let total = (self.opts.kimg * 1000.0).round() as u64;
        let tick_nimg = (self.opts.tick_kimg * 1000.0).round() as u64;
        let fresh = self.state.cur_nimg == 0;
        if self.state.cur_nimg >= total {
            // Nothing left to train: report the run as it is, without touching its files.
            return snapshot::latest(&self.run_dir);
        }
        // A fresh run, or a run started from another run's snapshot (a progressive stage).
        if fresh || !self.run_dir.join("training_options.json").exists() {
            let json = serde_json::to_string_pretty(&self.opts)?;
            crate::util::write_atomic(&self.run_dir.join("training_options.json"), |f| {
                Ok(f.write_all(json.as_bytes())?)
            })?;
            self.save_reals()?;
            self.save_grid("fakes_init.png")?;
        }
        self.truncate_stats()?;
        for m in &self.opts.metrics {
            self.truncate_jsonl(&format!("metric-{m}.jsonl"))?;
        }
        self.restore_best()?;
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.run_dir.join("log.txt"))?;
        let mut stats_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.run_dir.join("stats.jsonl"))?;
        let pb = if progress {
            indicatif::ProgressBar::new(total)
        } else {
            indicatif::ProgressBar::hidden()
        };
        pb.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {msg} ETA {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        pb.set_position(self.state.cur_nimg.min(total));
        let say = |log: &mut std::fs::File, line: String| {
            pb.suspend(|| eprintln!("{line}"));
            let _ = writeln!(log, "{line}");
        };
        say(
            &mut log,
            format!(
                "{} run {} at {:.3} kimg of {} on {:?}, dataset {} ({} images, {}×{}×{})",
                if fresh { "starting" } else { "resuming" },
                self.run_dir.display(),
                self.state.cur_nimg as f64 / 1000.0,
                self.opts.kimg,
                self.device,
                self.opts.data.display(),
                self.dataset.len(),
                self.dataset.header.channels,
                self.dataset.header.resolution,
                self.dataset.header.resolution
            ),
        );
        let mut last_snapshot = None;
        let mut stats = TickStats::default();
        let mut tick_start = (Instant::now(), self.state.cur_nimg);
        while self.state.cur_nimg < total {
            if let Err(e) = self.step(&mut stats) {
                let kept = match snapshot::latest(&self.run_dir) {
                    Ok(p) => format!(
                        "the snapshots written before are intact, the latest is {}",
                        p.display()
                    ),
                    Err(_) => "no snapshot had been written yet".to_string(),
                };
                let e = anyhow::anyhow!("{e:#}; {kept}");
                let _ = writeln!(log, "error: {e}");
                return Err(e);
            }
            let (t0, n0) = tick_start;
            let rate = (self.state.cur_nimg - n0) as f64 / t0.elapsed().as_secs_f64().max(1e-9);
            pb.set_position(self.state.cur_nimg.min(total));
            pb.set_message(format!(
                "kimg {:.2}/{} | {:.1} img/s | G {:.3} D {:.3}",
                self.state.cur_nimg as f64 / 1000.0,
                self.opts.kimg,
                rate,
                stats.mean("loss_G"),
                stats.mean("loss_D"),
            ));
            let done = self.state.cur_nimg >= total;
            if !done && self.state.cur_nimg < n0 + tick_nimg {
                continue;
            }
            // End of tick: log, and every `snap` ticks a grid and a snapshot.
            let secs = t0.elapsed().as_secs_f64();
            self.state.total_time_s += secs;
            self.state.cur_tick += 1;
            let kimg = self.state.cur_nimg as f64 / 1000.0;
            let mut line = serde_json::Map::new();
            line.insert("tick".into(), self.state.cur_tick.into());
            line.insert("nimg".into(), self.state.cur_nimg.into());
            line.insert("kimg".into(), kimg.into());
            line.insert("sec_per_tick".into(), secs.into());
            line.insert("img_per_s".into(), rate.into());
            line.insert("total_time_s".into(), self.state.total_time_s.into());
            line.insert("peak_rss_gb".into(), peak_rss_gb().into());
            for (k, v) in stats.means() {
                line.insert(k.into(), v.into());
            }
            if let Some((ens, _)) = &self.cv {
                line.insert("cv_active".into(), self.cv_active().into());
                for m in ens.state() {
                    line.insert(format!("cv_ada_p.{}", m.name), m.ada_p.into());
                }
            }
            line.insert(
                "timestamp".into(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)?
                    .as_secs_f64()
                    .into(),
            );
            writeln!(stats_file, "{}", serde_json::Value::Object(line))?;
            stats_file.flush()?;
            let means: Vec<String> = stats.means().map(|(k, v)| format!("{k} {v:.4}")).collect();
            say(
                &mut log,
                format!(
                    "tick {} kimg {kimg:.3} {rate:.1} img/s {}",
                    self.state.cur_tick,
                    means.join(" ")
                ),
            );
            if done || self.state.cur_tick % self.opts.snap == 0 {
                self.save_grid(&format!(
                    "fakes{}.png",
                    snapshot::kimg_label(self.state.cur_nimg)
                ))?;
                let p = self.save_snapshot()?;
                say(&mut log, format!("snapshot {}", p.display()));
                for line in pb.suspend(|| self.evaluate_metrics(&p))? {
                    say(&mut log, line);
                }
                // The report is for the user watching the run: its failure must not stop it.
                if let Err(e) = crate::report::write_report(&self.run_dir) {
                    say(&mut log, format!("report: {e:#}"));
                }
                last_snapshot = Some(p);
            }
            stats = TickStats::default();
            tick_start = (Instant::now(), self.state.cur_nimg);
        }
        pb.finish_and_clear();
        match last_snapshot {
            Some(p) => Ok(p),
            None => snapshot::latest(&self.run_dir),
        }
    }
}

/// The run's vision-aided ensemble with its heads' Adam (the D learning rate, β = (0, 0.99),
/// the lazy-regularisation rescaling as for D). Each head is drawn from a seed of its own
/// (the run's seed and the network's position, [`va::DiscriminatorBuilder::head_seed`]), so a
/// network added on resume gets the head it would have had in a fresh run.
fn build_ensemble(
    opts: &TrainOptions,
    c: &CvOptions,
    d_reg: Option<i64>,
    device: Device,
) -> Result<(va::Discriminator, Adam)> {
    let ens = va::Discriminator::builder(&c.bank, &c.loss)
        .head_variant(c.head)
        .augment(c.augment.clone())
        .device(device)
        .head_seed(opts.seed)
        .build(&Cache::open_default()?)
        .context("--cv")?;
    let opt = Adam::lazy(ens.heads(), opts.dlr, (0.0, 0.99), 1e-8, d_reg);
    Ok((ens, opt))
}

/// Per-sample R1 penalty ‖∇_x D(aug(x))‖² on real images, with a graph for the backward pass.
pub fn r1_penalty(d: &Discriminator, policy: &Policy, real: &Tensor) -> Tensor {
    let x = real.detach().set_requires_grad(true);
    let logits = d.forward(&policy.apply(&x));
    let grads = Tensor::run_backward(&[logits.sum(None::<Kind>)], &[&x], true, true);
    grads[0]
        .square()
        .sum_dim_intlist(&[1i64, 2, 3][..], false, None::<Kind>)
}

/// The JSON lines of a file; none when it does not exist, unreadable lines skipped.
pub fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .map(|text| {
            text.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Peak resident memory of this process (VmHWM), in GiB; 0 where /proc is unavailable.
pub fn peak_rss_gb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kb| kb / (1024.0 * 1024.0))
}

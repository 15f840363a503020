//! Adam with its state in plain tensors, so that snapshots can hold the moments and a resumed
//! run continues exactly (tch's optimisers keep their state inside libtorch, out of reach).
use tch::nn::VarStore;
use tch::Tensor;

#[derive(Debug)]
pub struct Adam {
    params: Vec<(String, Tensor)>,
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
    /// Steps taken per parameter (a parameter added to a resumed run starts at 0, as a fresh
    /// PyTorch param group does, so its bias correction is right).
    steps: Vec<i64>,
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl Adam {
    /// Optimises every trainable variable of `vs`, in name order.
    pub fn new(vs: &VarStore, lr: f64, beta1: f64, beta2: f64, eps: f64) -> Self {
        let trainable: Vec<Tensor> = vs.trainable_variables();
        let mut params: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| trainable.iter().any(|v| v.data_ptr() == t.data_ptr()))
            .collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let exp_avg = params.iter().map(|(_, p)| p.zeros_like()).collect();
        let exp_avg_sq = params.iter().map(|(_, p)| p.zeros_like()).collect();
        let steps = vec![0; params.len()];
        Self {
            params,
            exp_avg,
            exp_avg_sq,
            steps,
            lr,
            beta1,
            beta2,
            eps,
        }
    }

    /// StyleGAN2's lazy regularisation runs the regulariser every `interval` steps with a
    /// larger weight; scaling lr and the betas by interval/(interval+1) keeps the effective
    /// optimiser the same as with regularisation every step.
    pub fn lazy(
        vs: &VarStore,
        lr: f64,
        betas: (f64, f64),
        eps: f64,
        reg_interval: Option<i64>,
    ) -> Self {
        let c = reg_interval.map_or(1.0, |i| i as f64 / (i as f64 + 1.0));
        Self::new(vs, lr * c, betas.0.powf(c), betas.1.powf(c), eps)
    }

    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            p.zero_grad();
        }
    }

    pub fn step(&mut self) {
        tch::no_grad(|| {
            for (i, (_, p)) in self.params.iter_mut().enumerate() {
                let mut g = p.grad();
                if !g.defined() {
                    continue;
                }
                self.steps[i] += 1;
                let bc1 = 1.0 - self.beta1.powi(self.steps[i] as i32);
                let bc2 = 1.0 - self.beta2.powi(self.steps[i] as i32);
                // As StyleGAN2-ADA: a non-finite gradient entry must not poison the moments.
                let _ = g.nan_to_num_(0.0, 1e5, -1e5);
                let m = &mut self.exp_avg[i];
                let _ = m.g_mul_scalar_(self.beta1);
                let _ = m.g_add_(&(&g * (1.0 - self.beta1)));
                let v = &mut self.exp_avg_sq[i];
                let _ = v.g_mul_scalar_(self.beta2);
                let _ = v.addcmul_(&g, &g.g_mul_scalar(1.0 - self.beta2));
                let denom = v.sqrt() / bc2.sqrt() + self.eps;
                let _ = p.addcdiv_(&(&*m * (-self.lr / bc1)), &denom);
            }
        });
    }

    /// The number of steps taken (by the longest-trained parameter).
    pub fn step_count(&self) -> i64 {
        self.steps.iter().copied().max().unwrap_or(0)
    }

    /// The state as named tensors (`exp_avg.<param>`, `exp_avg_sq.<param>`, `step.<param>`).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(3 * self.params.len());
        for (i, (n, _)) in self.params.iter().enumerate() {
            out.push((format!("exp_avg.{n}"), self.exp_avg[i].shallow_clone()));
            out.push((
                format!("exp_avg_sq.{n}"),
                self.exp_avg_sq[i].shallow_clone(),
            ));
            out.push((format!("step.{n}"), Tensor::from(self.steps[i])));
        }
        out
    }

    /// Restores the state saved by [`Adam::state`]. A parameter for which `fresh` is true may
    /// be missing (it was added since) and starts from zero moments; any other missing entry
    /// is an error.
    pub fn load_state(
        &mut self,
        lookup: &impl Fn(&str) -> Option<Tensor>,
        fresh: impl Fn(&str) -> bool,
    ) -> anyhow::Result<()> {
        tch::no_grad(|| -> anyhow::Result<()> {
            for (i, (n, _)) in self.params.iter().enumerate() {
                let step = lookup(&format!("step.{n}"));
                if step.is_none() && fresh(n) {
                    continue;
                }
                let missing = |key: &str| anyhow::anyhow!("optimiser state {key} missing");
                self.steps[i] = step
                    .ok_or_else(|| missing(&format!("step.{n}")))?
                    .int64_value(&[]);
                for (prefix, dst) in [
                    ("exp_avg", &mut self.exp_avg[i]),
                    ("exp_avg_sq", &mut self.exp_avg_sq[i]),
                ] {
                    let key = format!("{prefix}.{n}");
                    dst.f_copy_(&lookup(&key).ok_or_else(|| missing(&key))?)?;
                }
            }
            Ok(())
        })
    }
}

//! Adam with its state in plain tensors, so that snapshots can hold the moments and a resumed
//! run continues exactly (tch's optimisers keep their state inside libtorch, out of reach).
use tch::nn::VarStore;
use tch::Tensor;

#[derive(Debug)]
pub struct Adam {
    params: Vec<(String, Tensor)>,
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
    pub step: i64,
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
        Self {
            params,
            exp_avg,
            exp_avg_sq,
            step: 0,
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
        self.step += 1;
        let bc1 = 1.0 - self.beta1.powi(self.step as i32);
        let bc2 = 1.0 - self.beta2.powi(self.step as i32);
        tch::no_grad(|| {
            for (i, (_, p)) in self.params.iter_mut().enumerate() {
                let mut g = p.grad();
                if !g.defined() {
                    continue;
                }
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

    /// The moments as named tensors (`exp_avg.<param>`, `exp_avg_sq.<param>`).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.params
            .iter()
            .zip(self.exp_avg.iter().zip(&self.exp_avg_sq))
            .flat_map(|((n, _), (m, v))| {
                [
                    (format!("exp_avg.{n}"), m.shallow_clone()),
                    (format!("exp_avg_sq.{n}"), v.shallow_clone()),
                ]
            })
            .collect()
    }

    /// Restores the moments saved by [`Adam::state`]; missing entries are an error.
    pub fn load_state(
        &mut self,
        step: i64,
        lookup: &impl Fn(&str) -> Option<Tensor>,
    ) -> anyhow::Result<()> {
        tch::no_grad(|| -> anyhow::Result<()> {
            for (i, (n, _)) in self.params.iter().enumerate() {
                for (prefix, dst) in [
                    ("exp_avg", &mut self.exp_avg[i]),
                    ("exp_avg_sq", &mut self.exp_avg_sq[i]),
                ] {
                    let key = format!("{prefix}.{n}");
                    let src = lookup(&key)
                        .ok_or_else(|| anyhow::anyhow!("optimiser state {key} missing"))?;
                    dst.f_copy_(&src)?;
                }
            }
            Ok(())
        })?;
        self.step = step;
        Ok(())
    }
}

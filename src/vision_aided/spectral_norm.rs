//! Spectral normalisation of a weight (Miyato et al. 2018) as `torch.nn.utils.spectral_norm`
//! applies it to the pip package's heads: the weight is divided by its largest singular value,
//! estimated by one power iteration per forward pass, with the iteration's vectors `u` and `v`
//! kept between passes (and in snapshots, so a resumed run continues the same estimate).
use tch::nn::{Init, Path};
use tch::{Kind, Tensor};

const EPS: f64 = 1e-12;

#[derive(Debug)]
pub struct SpectralNorm {
    /// The trainable, unnormalised weight (`weight_orig` in PyTorch).
    pub weight_orig: Tensor,
    u: Tensor,
    v: Tensor,
}

/// `x / max(‖x‖, eps)`, as `F.normalize` on a vector.
fn normalize(x: &Tensor) -> Tensor {
    x / x.norm().clamp_min(EPS)
}

impl SpectralNorm {
    /// A weight of `shape` (output dimension first), initialised as PyTorch's `nn.Linear` and
    /// `nn.Conv2d` do (Kaiming-uniform with a = √5, i.e. U(±1/√fan_in)), with random unit
    /// `u` (output size) and `v` (fan-in size).
    pub fn new(vs: &Path, shape: &[i64]) -> Self {
        let fan_in: i64 = shape[1..].iter().product();
        let bound = 1.0 / (fan_in as f64).sqrt();
        let weight_orig = vs.var(
            "weight_orig",
            shape,
            Init::Uniform {
                lo: -bound,
                up: bound,
            },
        );
        let unit = |name: &str, n: i64| {
            let mut t = vs.zeros_no_train(name, &[n]);
            tch::no_grad(|| t.copy_(&normalize(&Tensor::randn([n], (Kind::Float, vs.device())))));
            t
        };
        let u = unit("weight_u", shape[0]);
        let v = unit("weight_v", fan_in);
        Self { weight_orig, u, v }
    }

    /// The normalised weight, after one power iteration that updates `u` and `v` in place.
    /// The gradient flows through σ to the weight, not through `u` and `v`.
    pub fn weight(&self) -> Tensor {
        let out = self.weight_orig.size()[0];
        let w = self.weight_orig.reshape([out, -1]);
        tch::no_grad(|| {
            let mut v = self.v.shallow_clone();
            v.copy_(&normalize(&w.detach().transpose(0, 1).mv(&self.u)));
            let mut u = self.u.shallow_clone();
            u.copy_(&normalize(&w.detach().mv(&self.v)));
        });
        // Copies: later passes update u and v in place while this graph still needs them.
        let sigma = self.u.copy().dot(&w.mv(&self.v.copy()));
        &self.weight_orig / sigma
    }
}

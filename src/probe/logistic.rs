//! L2-regularised logistic regression as scikit-learn's `LogisticRegression(C)` defines it:
//! minimise `½‖w‖² + C·Σᵢ log(1 + exp(−yᵢ(xᵢ·w + b)))` over the weights w and the intercept b
//! (not penalised), labels yᵢ ∈ {−1, +1}. Solved to the optimum by Newton's method with a
//! backtracking line search (the objective is strictly convex in w and convex in b), in f64.
use anyhow::{ensure, Result};
use tch::{Kind, Tensor};

/// A fitted classifier: `p(real | x) = σ(x·w + b)`.
#[derive(Debug)]
pub struct LogisticRegression {
    /// `[d]`, f64.
    pub weights: Tensor,
    pub intercept: f64,
    /// Newton iterations taken.
    pub iterations: usize,
}

/// Newton stops when the largest gradient entry is below this, relative to the objective's
/// scale (C·n), or after `MAX_ITERATIONS`.
const GRADIENT_TOLERANCE: f64 = 1e-10;
const MAX_ITERATIONS: usize = 100;

/// `x`: `[n, d]` features (any float kind, converted to f64), `labels`: `[n]` booleans or 0/1
/// (1 = positive class). Returns the exact minimiser of the regularised objective.
pub fn fit(x: &Tensor, labels: &Tensor, c: f64) -> Result<LogisticRegression> {
    let (n, d) = x.size2()?;
    ensure!(
        n >= 2 && c > 0.0,
        "logistic regression needs samples and C > 0"
    );
    let dev = x.device();
    // The intercept is one more weight on a constant feature, left out of the penalty.
    let xa = Tensor::cat(
        &[
            x.to_kind(Kind::Double),
            Tensor::ones([n, 1], (Kind::Double, dev)),
        ],
        1,
    );
    let y = labels.to_kind(Kind::Double) * 2.0 - 1.0;
    let penalty = Tensor::cat(
        &[
            Tensor::ones([d], (Kind::Double, dev)),
            Tensor::zeros([1], (Kind::Double, dev)),
        ],
        0,
    );
    let objective = |theta: &Tensor| -> f64 {
        let margins = xa.mv(theta) * &y;
        let loss = (-margins).softplus().sum(Kind::Double);
        ((theta * theta * &penalty).sum(Kind::Double) * 0.5 + loss * c).double_value(&[])
    };
    let mut theta = Tensor::zeros([d + 1], (Kind::Double, dev));
    let mut f = objective(&theta);
    let scale = c * n as f64;
    let mut iterations = 0;
    while iterations < MAX_ITERATIONS {
        let z = xa.mv(&theta);
        // d/dz of softplus(−y z) is −y σ(−y z).
        let residual = -(&y) * (-(&z) * &y).sigmoid();
        let grad = &theta * &penalty + xa.transpose(0, 1).mv(&residual) * c;
        if grad.abs().max().double_value(&[]) < GRADIENT_TOLERANCE * scale {
            break;
        }
        let p = z.sigmoid();
        let curvature: Tensor = &p * (-&p + 1.0) * c;
        let hessian = xa.transpose(0, 1).matmul(&(&xa * curvature.unsqueeze(1))) + penalty.diag(0);
        let step = Tensor::linalg_solve(&hessian, &grad.unsqueeze(1), true).squeeze_dim(1);
        // Backtracking: the full Newton step almost always decreases f; halve until it does.
        let mut t = 1.0;
        let mut accepted = false;
        for _ in 0..50 {
            let candidate = &theta - &step * t;
            let fc = objective(&candidate);
            if fc <= f {
                theta = candidate;
                accepted = fc < f;
                f = fc;
                break;
            }
            t *= 0.5;
        }
        iterations += 1;
        if !accepted {
            // No decrease at machine precision: at the optimum.
            break;
        }
    }
    Ok(LogisticRegression {
        weights: theta.narrow(0, 0, d),
        intercept: theta.double_value(&[d]),
        iterations,
    })
}

impl LogisticRegression {
    /// `[n]` booleans: whether each row is classified positive (`x·w + b > 0`).
    pub fn predict(&self, x: &Tensor) -> Tensor {
        (x.to_kind(Kind::Double).mv(&self.weights) + self.intercept).gt(0.0)
    }

    /// The fraction of rows whose prediction equals the label (1 = positive).
    pub fn accuracy(&self, x: &Tensor, labels: &Tensor) -> f64 {
        self.predict(x)
            .eq_tensor(&labels.to_kind(Kind::Bool))
            .to_kind(Kind::Double)
            .mean(Kind::Double)
            .double_value(&[])
    }
}

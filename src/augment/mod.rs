//! Differentiable augmentation for the discriminators.
pub mod diffaugment;

pub use diffaugment::Policy;

//! Differentiable augmentation for the discriminators.
pub mod ada;
pub mod diffaugment;

pub use ada::AdaPipeline;
pub use diffaugment::Policy;

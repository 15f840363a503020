//! vagan: GAN training with vision-aided discriminators.
//!
//! The crate is organised like the method: [`data`] (datasets), [`nets`] (the StyleGAN2 base
//! GAN), [`augment`] (DiffAugment), [`train`] (the training loop and snapshots),
//! [`generate`] (sampling from snapshots) and [`weights`] (tensors on disk).
pub mod augment;
pub mod backbones;
pub mod data;
pub mod generate;
pub mod images;
pub mod metrics;
pub mod nets;
pub mod probe;
pub mod report;
pub mod train;
pub mod util;
pub mod vision_aided;
pub mod weights;

pub use tch;

//! The base GAN: StyleGAN2 generator and residual discriminator.
pub mod discriminator;
pub mod generator;
pub mod layers;

pub use discriminator::{Discriminator, DiscriminatorConfig};
pub use generator::{Generator, GeneratorConfig, NoiseMode};

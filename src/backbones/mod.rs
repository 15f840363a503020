//! The off-the-shelf networks of the vision-aided ensemble, frozen, each doing its own
//! pre-processing from [-1, 1] images.
pub mod bank;
pub mod common;
pub mod efficientnet_lite;
pub mod swin;
pub mod vgg;
pub mod vit;

//! The vision-aided discriminator: frozen off-the-shelf backbones from the bank, each with a
//! trainable head ([`heads`]), its own augmentation and a loss type ([`losses`]), summed over
//! the networks ([`ensemble::Discriminator`], the API other tch training loops embed).
pub mod ensemble;
pub mod heads;
pub mod losses;
pub mod spectral_norm;

pub use ensemble::{Augment, Discriminator, DiscriminatorBuilder, MemberState};
pub use heads::{Head, HeadConfig, HeadVariant, MlpD, MultiLevelDViT, SimpleD};
pub use losses::{ensemble_loss, parse_loss_types, LossType, Target};

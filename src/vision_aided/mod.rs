//! The vision-aided discriminator's trainable parts: the heads that turn frozen backbone
//! features into logits ([`heads`]) and the loss types applied to those logits ([`losses`]).
pub mod heads;
pub mod losses;

pub use heads::{Head, MlpD, MultiLevelDViT, SimpleD};
pub use losses::{ensemble_loss, parse_loss_types, LossType, Target};

//! Swin-T.

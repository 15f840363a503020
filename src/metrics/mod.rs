//! FID and KID on the TF Inception's pool3 features, matching clean-fid.
pub mod cli;

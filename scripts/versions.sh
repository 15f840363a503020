# The one place where the tensor-engine versions are pinned.
# tch 0.24.0 links exactly libtorch 2.11.0; the GPU machines carry torch 2.11.0 too.
# Keep TCH_VERSION in step with the `tch` line of Cargo.toml.
TORCH_VERSION=2.11.0
TCH_VERSION=0.24.0

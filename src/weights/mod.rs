//! Tensors on disk: safetensors files with a string-to-string metadata map, written atomically,
//! and PyTorch checkpoints read natively ([`torch_checkpoint`]).
pub mod cache;
pub mod registry;
pub mod torch_checkpoint;

use crate::util::write_atomic;
use anyhow::{bail, Context, Result};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use tch::{Kind, Tensor};

fn dtype_of(kind: Kind) -> Result<Dtype> {
    Ok(match kind {
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Int64 => Dtype::I64,
        Kind::Int => Dtype::I32,
        Kind::Uint8 => Dtype::U8,
        Kind::Bool => Dtype::BOOL,
        k => bail!("tensor kind {k:?} cannot be stored in safetensors here"),
    })
}

fn kind_of(dtype: Dtype) -> Result<Kind> {
    Ok(match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::U8 => Kind::Uint8,
        Dtype::BOOL => Kind::Bool,
        d => bail!("safetensors dtype {d:?} is not supported"),
    })
}

/// Saves named tensors (moved to the CPU) and metadata; the file appears complete or not at all.
pub fn save(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: &HashMap<String, String>,
) -> Result<()> {
    let mut buffers = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let t = t.detach().to_device(tch::Device::Cpu).contiguous();
        let numel = t.numel();
        let mut bytes = vec![0u8; numel * t.kind().elt_size_in_bytes()];
        t.f_copy_data_u8(&mut bytes, numel)
            .with_context(|| format!("copying tensor {name}"))?;
        let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        buffers.push((name.clone(), dtype_of(t.kind())?, shape, bytes));
    }
    let views: Vec<(String, TensorView)> = buffers
        .iter()
        .map(|(n, d, s, b)| Ok((n.clone(), TensorView::new(*d, s.clone(), b)?)))
        .collect::<Result<_>>()?;
    let data = safetensors::serialize(views, &Some(metadata.clone()))?;
    write_atomic(path, |f| Ok(f.write_all(&data)?))
}

/// Named tensors, in file order or sorted by name.
pub type NamedTensors = Vec<(String, Tensor)>;

/// Loads every tensor of a safetensors file (on the CPU, sorted by name) and its metadata.
pub fn load(path: &Path) -> Result<(NamedTensors, HashMap<String, String>)> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let st = SafeTensors::deserialize(&bytes)
        .with_context(|| format!("{} is not a safetensors file", path.display()))?;
    let (_, meta) = SafeTensors::read_metadata(&bytes)?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    let mut tensors = Vec::new();
    for (name, view) in st.tensors() {
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let t = Tensor::f_from_data_size(view.data(), &shape, kind_of(view.dtype())?)
            .with_context(|| format!("{}: tensor {name}", path.display()))?;
        tensors.push((name, t));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((tensors, metadata))
}

/// Copies named tensors into the variables of `vs`, by name. Every variable must get a tensor of
/// its shape, and every tensor must find a variable unless `ignore(name)` says it is not needed
/// (e.g. BatchNorm's `num_batches_tracked`); `origin` names the file in errors.
pub fn load_into(
    vs: &tch::nn::VarStore,
    tensors: &HashMap<String, Tensor>,
    origin: &str,
    ignore: impl Fn(&str) -> bool,
) -> Result<()> {
    load_into_partial(vs, tensors, origin, ignore, |_| false)
}

/// [`load_into`], except that variables for which `fresh(name)` holds may be missing from
/// `tensors` (they keep their values: parts added to a network since the file was written).
pub fn load_into_partial(
    vs: &tch::nn::VarStore,
    tensors: &HashMap<String, Tensor>,
    origin: &str,
    ignore: impl Fn(&str) -> bool,
    fresh: impl Fn(&str) -> bool,
) -> Result<()> {
    let vars = vs.variables();
    let mut unused: Vec<&String> = tensors
        .keys()
        .filter(|k| !vars.contains_key(*k) && !ignore(k))
        .collect();
    unused.sort();
    if !unused.is_empty() {
        bail!("{origin}: tensors the network does not have: {unused:?}");
    }
    tch::no_grad(|| -> Result<()> {
        for (name, mut var) in vars {
            let src = match tensors.get(&name) {
                Some(src) => src,
                None if fresh(&name) => continue,
                None => bail!("{origin}: tensor {name} missing"),
            };
            if src.size() != var.size() {
                bail!(
                    "{origin}: tensor {name} has shape {:?}, the network expects {:?}",
                    src.size(),
                    var.size()
                );
            }
            var.f_copy_(src)?;
        }
        Ok(())
    })
}

//! Reading PyTorch checkpoints (legacy pickle, zip, TorchScript) natively.

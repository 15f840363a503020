//! VGG-16 (plain and anti-aliased).

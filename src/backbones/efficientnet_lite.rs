//! EfficientNet-Lite0/1/2.

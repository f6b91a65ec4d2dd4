"""Layer 2: raw recordings to shards: the raw layout, media readers, resampling, lag estimation,
features, ``preprocess`` and raw-tree validation. Imports ``core`` and ``shards``."""

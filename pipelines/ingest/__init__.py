"""Layer 2: raw recordings to shards: the raw layout, media readers, resampling, lag estimation,
features, the stream kinds (``streams``: one class per kind), the per-recording pipeline
(``recording``, ``windows``), ``preprocess`` and raw-tree validation. Imports ``core`` and ``shards``."""

"""Layer 3: learning: datasets over shards, splits, models, losses, the training engine, pretrain,
transfer, checkpoints, torchrun, evaluate and predict. Imports ``core``, ``shards`` and (``predict``
on a raw folder only) ``ingest``. Never imports media readers at module level."""

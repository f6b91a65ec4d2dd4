"""Layer 1: the shard format (schemas/shard.md): encoding constants and checks, the window reader,
the manifest and shard validation. Imports only ``pipelines.core``."""

"""Data contracts shipped as package data: meta.schema.json, raw-layout.md, shard.md, glossary.md."""

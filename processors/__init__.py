"""The stream processors (faust): sessionization and identity resolution between the raw and enriched topics."""

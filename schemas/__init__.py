"""The contracts between footfall's stages: every message on a topic, every record that crosses a boundary.

Stages (ingest, processors, projections) never import each other; they meet here.
"""

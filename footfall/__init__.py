"""footfall's composition root: the CLI that wires the stages together (they never import each other)."""

"""Dataset readers and generators (Aff-Wild2 layout, synthetic Aff-Wild2-shaped sets)."""

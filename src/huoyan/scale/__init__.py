"""Scale: bulk re-inspection and training on Ray."""

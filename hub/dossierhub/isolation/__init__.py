"""The walls between dossiers: Unix identities, sandboxes, safe file access, and the environment a
dossier's kernels get."""

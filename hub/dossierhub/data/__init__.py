"""From sources to a dossier's extracts: the catalog and manifests checked, views planned,
pseudonyms keyed, extracts built."""

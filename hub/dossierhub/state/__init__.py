"""The installation's state under HOME: its layout, the typed models of its files, settings, YAML
loading, refusals, and the audit log."""

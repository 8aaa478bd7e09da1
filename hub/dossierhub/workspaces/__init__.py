"""Shared dossier workspaces: the JupyterHub configuration, spawner, provisioning, serve, and
expiry."""

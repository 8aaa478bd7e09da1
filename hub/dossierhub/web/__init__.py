"""The dossierhub pages and REST API, a JupyterHub service at /services/dossierhub/."""

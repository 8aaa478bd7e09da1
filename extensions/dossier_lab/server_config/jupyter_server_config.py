"""The workspace server's own configuration (dossier_lab/undumpable.py names this folder in
JUPYTER_CONFIG_PATH; root's, installed with the package, out of the team's reach)."""

from dossier_lab.notary import NeverTrusted

c = get_config()  # noqa: F821 - given by traitlets when it runs a configuration file
c.NotebookNotary.store_factory = NeverTrusted

"""No notebook is trusted in a dossier workspace: the store of notebook signatures the
workspace server is given (server_config/jupyter_server_config.py) keeps none and knows none.

Jupyter trusts a notebook whose signature its store holds, and JupyterLab then runs the
notebook's script outputs and unsanitised HTML in the browser that opens it. The server signs
whatever a client saves with `metadata.trusted` set on every code cell, and a kernel reaches
the server's REST API with the workspace's own token (or read the key from the team's folder):
so any member could save a notebook whose output is script, trusted, and a colleague who
opened it ran that script in their browser, where their hub token is in the page; whatever it
then ran was recorded as the colleague (red team B on issue 16). Outputs a person's own
session produces still render as they run; a notebook opened from disk shows its outputs
sanitised (HTML without script, no JavaScript output) until it is run again.
"""

from __future__ import annotations

from nbformat.sign import SignatureStore


class NeverTrusted(SignatureStore):
    """A signature store that keeps nothing and recognises nothing."""

    def store_signature(self, digest: str, algorithm: str) -> None:
        return None  # a save signs nothing that a later open would trust

    def check_signature(self, digest: str, algorithm: str) -> bool:
        return False

    def remove_signature(self, digest: str, algorithm: str) -> None:
        return None

    def close(self) -> None:
        return None

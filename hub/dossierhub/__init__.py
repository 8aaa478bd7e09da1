"""dossierhub: shared analysis workspaces for city dossier teams (hub side, privileged)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dossierhub")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

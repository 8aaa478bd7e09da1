"""Server side of the dossier workspace.

- /dossier/info: the dossier's title, purpose, expiry and approved views (columns with type,
  kind and description; rows; build time) for the Dossier panel, from the workspace's own
  extracts folder.
- Closes the easy exits for data: results leave a workspace through the report airlock, not as
  downloads, so /files/ (raw file download) and /nbconvert/ (export download) answer 403 with
  the reason. What remains is the accepted insider risk of a team member: copy and paste, the
  screen, and the contents API the editor itself needs.
- Kernel websockets send each message at once (nodelay.py): Nagle's algorithm made every
  execution wait ~40 ms for the browser's delayed acknowledgement.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from tornado import web

from dossier_kernel.provenance import ProvenanceError

from .info import NoDossier, dossier_info
from .nodelay import use_nodelay

BLOCKED = "Downloads are closed in a dossier workspace: results leave through a released report."


class NoDownloadHandler(JupyterHandler):
    """Answers every method on a download route with 403 and the reason."""

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        self.log.warning("refused download %s %s", self.request.method, self.request.path)
        raise web.HTTPError(403, BLOCKED)

    get = post = put = head = _refuse  # type: ignore[assignment]

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish({"status": status_code, "message": BLOCKED})


class DossierInfoHandler(APIHandler):
    """The panel's view of the dossier: for whoever may read this workspace's files."""

    auth_resource = "contents"

    @web.authenticated
    @authorized
    def get(self) -> None:
        try:
            info = dossier_info()
        except NoDossier as exc:
            raise web.HTTPError(404, str(exc)) from None
        except ProvenanceError as exc:  # the hub's fault, not this person's: said, not hidden
            raise web.HTTPError(500, str(exc)) from None
        self.finish(info)


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "dossier-lab"}]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "dossier_lab"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    base = serverapp.web_app.settings["base_url"].rstrip("/")
    serverapp.web_app.add_handlers(
        ".*$",
        [
            (f"{base}/dossier/info", DossierInfoHandler),
            (f"{base}/files/.*", NoDownloadHandler),
            (f"{base}/nbconvert/.*", NoDownloadHandler),
        ],
    )
    serverapp.log.info("dossier_lab: downloads closed (/files/, /nbconvert/)")
    if use_nodelay(serverapp.web_app.settings):
        serverapp.log.info("dossier_lab: kernel websockets without Nagle's delay")

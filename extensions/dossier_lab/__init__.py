"""Server side of the dossier workspace.

- /dossier/info: the dossier's title, purpose, expiry and approved views (columns with type,
  kind and description; rows; build time) for the Dossier panel, from the workspace's own
  extracts folder.
- Closes the easy exits for data: results leave a workspace through the report airlock, not as
  downloads, so /files/ (raw file download) and /nbconvert/ (export download) answer 403 with
  the reason. What remains is the accepted insider risk of a team member: copy and paste, the
  screen, and the contents API the editor itself needs.
- No member's content runs script in another member's JupyterLab: every page carries the
  Content-Security-Policy of csp.py (no inline script, no event-handler attribute, whatever
  a notebook's or a cell's trust says), and POST api/contents/<path>/trust answers 403: in a
  shared workspace one member cannot vouch for a notebook on the others' behalf.
- Kernel websockets send each message at once (nodelay.py): Nagle's algorithm made every
  execution wait ~40 ms for the browser's delayed acknowledgement.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from tornado import web

from dossier_kernel.provenance import ProvenanceError

from .csp import lab_template, workspace_policy
from .info import NoDossier, dossier_info
from .nodelay import use_nodelay

BLOCKED = "Downloads are closed in a dossier workspace: results leave through a released report."
NOT_TRUSTED = (
    "Notebooks are not trusted in a dossier workspace: it is shared, and one member cannot "
    "vouch for a notebook on the others' behalf. Run its cells to see their outputs in full."
)


class NoDownloadHandler(JupyterHandler):
    """Answers every method on a download route with 403 and the reason."""

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        self.log.warning("refused download %s %s", self.request.method, self.request.path)
        raise web.HTTPError(403, BLOCKED)

    get = post = put = head = _refuse  # type: ignore[assignment]

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish({"status": status_code, "message": BLOCKED})


class NoTrustHandler(JupyterHandler):
    """Answers the notebook trust route with 403 and the reason (jupyter_server's own
    handler would sign the notebook for every member who opens it)."""

    def post(self, *args: Any, **kwargs: Any) -> None:
        self.log.warning("refused trust %s", self.request.path)
        raise web.HTTPError(403, NOT_TRUSTED)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish({"status": status_code, "message": NOT_TRUSTED})


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
            (f"{base}/api/contents/.*/trust", NoTrustHandler),
        ],
    )
    serverapp.log.info("dossier_lab: downloads closed (/files/, /nbconvert/)")
    # set, not defaulted: JupyterHub's singleuser extension only defaults its own
    # (frame-ancestors), whichever of the two loads first
    headers = serverapp.web_app.settings.setdefault("headers", {})
    headers["Content-Security-Policy"] = workspace_policy(base + "/", lab_template())
    serverapp.log.info("dossier_lab: trust route closed; script only from the server's files")
    if use_nodelay(serverapp.web_app.settings):
        serverapp.log.info("dossier_lab: kernel websockets without Nagle's delay")

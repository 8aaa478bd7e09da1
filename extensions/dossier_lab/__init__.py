"""Server side of the dossier workspace: closes the easy exits for data.

Results leave a workspace through the report airlock, not as downloads: /files/ (raw file
download) and /nbconvert/ (export download) answer 403 with the reason. What remains is the
accepted insider risk of a team member: copy and paste, the screen, and the contents API the
editor itself needs.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.base.handlers import JupyterHandler
from tornado import web

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


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "dossier_lab"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    base = serverapp.web_app.settings["base_url"].rstrip("/")
    serverapp.web_app.add_handlers(
        ".*$",
        [(f"{base}/files/.*", NoDownloadHandler), (f"{base}/nbconvert/.*", NoDownloadHandler)],
    )
    serverapp.log.info("dossier_lab: downloads closed (/files/, /nbconvert/)")

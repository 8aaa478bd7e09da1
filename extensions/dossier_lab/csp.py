"""The Content-Security-Policy of a dossier workspace's pages: no member's content runs script
in another member's JupyterLab.

A shared workspace shows every member what the others wrote: outputs, markdown, cell
metadata. JupyterLab runs a *trusted* output's script (`application/javascript`, `<script>`
and `onerror=` in HTML), and trust is whatever a notebook's signature or, with real-time
collaboration, a cell's shared `trusted` metadata says; any collaborator's client can set the
latter. In a colleague's page such script runs as the colleague: it reads their token from
`#jupyter-config-data` and what it then runs is recorded as them (red team, issue 16).

So the browser itself refuses it, whatever the document says: script only from the server's
own files (JupyterLab's bundles and installed extensions, root's), no inline `<script>`, no
event-handler attribute, no `javascript:` URL, no plugin object, no `<base>` that would move
where JupyterLab loads its chunks from, no form posted elsewhere. The one inline script
JupyterLab's own page carries (it takes `?token=` out of the address bar) is allowed by its
hash, read from the template the server renders. Violations are reported to the server's
own CSP report route (its log).

One source only script already running can use stays allowed: `'unsafe-eval'` (without it
JupyterLab opened no notebook in 90 s, measured; its bundles build functions from strings).
`blob:` is not: no module a page makes itself runs. It was allowed for anywidget, the front
end of itables' sortable `%%sql` table, which imports the module a kernel's widget names from a
blob, so a widget a member's code made ran its module in every colleague's page that showed it
(measured). The Dossier extension now draws that table itself (extensions/src/sqltable.ts)
and anywidget is not installed.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

# an inline script: a <script> element without src whose type is JavaScript (or none)
_INLINE_SCRIPT = re.compile(r"<script(?P<attrs>[^>]*)>(?P<body>.*?)</script>", re.DOTALL)
_JAVASCRIPT_TYPES = {"", "text/javascript", "application/javascript", "module"}
_TYPE = re.compile(r"""\btype\s*=\s*["']?([^"'\s>]+)""")


def lab_template() -> Path:
    """The page JupyterLab renders in this environment (LabApp's templates_dir: the app
    directory's static/index.html)."""
    from jupyterlab.commands import get_app_dir

    return Path(get_app_dir()) / "static" / "index.html"


def inline_script_hashes(template: Path) -> list[str]:
    """CSP hash sources of the template's own inline scripts, as the browser computes them
    (sha256 of the element's text). A script holding a Jinja expression would render
    differently from the template: none is hashed, and the browser refuses it."""
    html = template.read_text(encoding="utf-8")
    hashes = []
    for found in _INLINE_SCRIPT.finditer(html):
        attrs, body = found["attrs"], found["body"]
        declared = _TYPE.search(attrs)
        kind = declared[1].lower() if declared else ""
        if "src=" in attrs or kind not in _JAVASCRIPT_TYPES or "{{" in body or "{%" in body:
            continue
        digest = base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode()
        hashes.append(f"'sha256-{digest}'")
    return hashes


def workspace_policy(base_url: str, template: Path) -> str:
    """The policy every page and answer of the workspace server carries."""
    scripts = " ".join(["'self'", "'unsafe-eval'", *inline_script_hashes(template)])
    return "; ".join(
        [
            f"script-src {scripts} 'report-sample'",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",  # as JupyterHub's default for its servers
            f"report-uri {base_url.rstrip('/')}/api/security/csp-report",
        ]
    )

"""The audit trail in words: one sentence per record, one function per action.

Presentation only (docs/audit.md says what each record holds): portal.audit_trail decides
what a person sees of a record (a viewer's trail keeps fewer details) and whether its run may
be opened (`run_link`, by roles.may_read_run); this module only words what it is given. So
every sentence reads its details with .get: a key a viewer's trail dropped, or a record from
an older version, makes a shorter sentence, never a crash. An action not in SENTENCES gets a
generic sentence; the page shows the raw details beside every sentence, folded away.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

REFUSED = ".refused"


@dataclass(frozen=True)
class Record:
    """One trail row as portal.audit_trail gives it, and where its run's page is."""

    row: dict[str, Any]
    runs_url: str  # the dossier's runs/, to which a run id is appended

    def get(self, key: str, default: Any = None) -> Any:
        return (self.row.get("details") or {}).get(key, default)

    @property
    def who(self) -> Markup:
        """`anna (lead)`: the actor and their role in the dossier now, if they have one."""
        actor = self.row.get("actor") or "someone"
        role = self.row.get("actor_role")
        return Markup("{} ({})").format(actor, role) if role else escape(actor)

    @property
    def run(self) -> Markup:
        return self.run_named("run")

    def run_named(self, word: str) -> Markup:
        """`run X of report T` (`word` X …), X a link to the run's page when this person may
        read it (portal.audit_trail's `run_link`), plain text otherwise."""
        run = self.get("run")
        if not run:
            return Markup("{} {}").format("a" if word == "run" else "A", "run")
        shown: Markup = escape(run)
        if self.row.get("run_link"):
            url = self.runs_url + run
            shown = Markup('<a class="run-link" href="{}">{}</a>').format(url, run)
        template = self.row.get("run_template") or self.get("template")
        if template:
            return Markup("{} {} of report {}").format(word, shown, template)
        return Markup("{} {}").format(word, shown)


def _parameters(values: Any) -> Markup:
    if not isinstance(values, dict) or not values:
        return Markup("")
    shown = ", ".join(f"{k}={v}" for k, v in values.items())
    return Markup(" with {}").format(shown)


# A refusal's reason (ReportRefused.reason) in words, for a trail that keeps no message: a
# viewer's (portal.VIEWER_DETAILS), which does not show what a team member typed.
REASONS = {
    "forbidden": "not allowed",
    "not_found": "not found",
    "conflict": "not possible at that moment",
    "invalid": "the request was invalid",
    "malformed": "the request was malformed",
}


def _because(r: Record) -> Markup:
    """A refusal's sentence as the person was given it, else its reason in words."""
    reason = r.get("reason")
    why = r.get("message") or REASONS.get(str(reason), reason)
    return Markup(": {}").format(why) if why else Markup("")


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _run_started(r: Record) -> Markup:
    return Markup("{} started {}{}").format(r.who, r.run, _parameters(r.get("parameters")))


def _run_finished(r: Record) -> Markup:
    text = Markup("{} {}").format(r.run_named("Run"), r.get("status") or "finished")
    if r.get("error"):
        text += Markup(": {}").format(r.get("error"))
    elif r.get("status") == "succeeded" and r.get("checks_passed") is False:
        text += Markup(", but an output check failed")
    elif r.get("status") == "succeeded" and r.get("checks_passed"):
        text += Markup(" and passed its output checks")
    return Markup("{} — started by {}").format(text, r.who)


def _released(r: Record) -> Markup:
    text = Markup("{} released {} to viewers").format(r.who, r.run)
    failed = r.get("failed_checks") or []
    if failed:
        text += Markup(" although {} failed").format(_count(len(failed), "check"))
    included = r.get("included") or []
    if included:
        text += Markup(", including {}").format(_count(len(included), "unchecked output"))
    if r.get("justification"):
        text += Markup(" — justification: {}").format(r.get("justification"))
    return text


def _read(r: Record) -> Markup:
    if r.get("table"):
        return Markup("{} downloaded table {} of {}").format(r.who, r.get("table"), r.run)
    if r.get("view") == "review":
        return Markup("{} reviewed the unchecked outputs of {}").format(r.who, r.run)
    return Markup("{} read the report of {}").format(r.who, r.run)


def _applied(r: Record) -> Markup:
    mine = [d for d in r.get("dossiers") or [] if isinstance(d, dict)]
    if not mine:
        return Markup("{} applied the manifests").format(r.who)
    entry = mine[0]
    views = [v for v in entry.get("views") or [] if isinstance(v, dict)]
    built = [v for v in views if v.get("status") not in (None, "unchanged")]
    text = Markup("{} applied the manifest: {}").format(r.who, _count(len(views), "view"))
    if views:
        text += Markup(" ({} rebuilt)").format(len(built))
    if entry.get("status"):
        text += Markup(", dossier {}").format(entry["status"])
    if entry.get("note"):
        text += Markup(" ({})").format(entry["note"])
    return text


def _hub_sync(r: Record) -> Markup:
    changes = [str(c) for c in r.get("changes") or []]
    if not changes:
        return Markup("The hub was brought in line with the manifest")
    return Markup("The hub was brought in line with the manifest: {}").format("; ".join(changes))


def _token(r: Record) -> Markup:
    note = Markup(" ({})").format(r.get("note")) if r.get("note") else Markup("")
    return Markup("{} issued an API token for {}{}").format(r.who, r.get("user") or "a user", note)


def _genesis(r: Record) -> Markup:
    if r.get("reason") == "adopted":
        return Markup("The audit log began here, vouching for the {} records before it").format(
            r.get("records_before", "")
        )
    return Markup("The audit log of installation {} began").format(r.get("installation", ""))


def _problems(r: Record) -> Markup:
    problems = r.get("problems") or []
    return Markup(": {}").format(_count(len(problems), "problem")) if problems else Markup("")


SHOWN_PEOPLE = 3  # a batch of more people names the busiest, then "and n others"


def _in_notebooks(ran: list[dict[str, Any]]) -> Markup:
    """`14 cells in poverty.ipynb and 2 in a.ipynb` (the batch summary's rows of one person)."""
    parts = []
    for i, row in enumerate(ran):
        count = int(row.get("count") or 0)
        what = _count(count, "cell") if i == 0 else str(count)
        where = row.get("path")
        parts.append(
            Markup("{} in {}").format(what, where)
            if where
            else Markup("{} in a notebook the workspace did not name").format(what)
        )
    return Markup(" and ").join(parts)


def _executions(r: Record) -> Markup:
    """A batch of a workspace's executions (portal._batch_summary: never its events):
    `b.devries ran 14 cells in poverty.ipynb; a.jansen ran 2 cells in a.ipynb`."""
    ran = [row for row in r.get("ran") or [] if isinstance(row, dict)]
    by_person: dict[str, list[dict[str, Any]]] = {}
    for row in ran:
        by_person.setdefault(str(row.get("person") or "someone"), []).append(row)
    refused = int(r.get("refused") or 0)
    turned_away = Markup("the workspace's bridge turned away {}").format(_count(refused, "request"))
    kernels = _kernel_calls(r.get("kernels") or [])
    if not by_person:
        if kernels:  # a sentence that starts with a person's name, as executions do
            return kernels + Markup("; ") + turned_away if refused else kernels
        if refused:
            return Markup("The workspace's bridge turned away {}").format(
                _count(refused, "request")
            )
        return Markup("The workspace's recorder handed in a batch without new executions")
    busiest = sorted(by_person, key=lambda p: -sum(int(x.get("count") or 0) for x in by_person[p]))
    said = [
        Markup("{} ran {}").format(person, _in_notebooks(by_person[person]))
        for person in busiest[:SHOWN_PEOPLE]
    ]
    text = Markup("; ").join(said)
    others = len(busiest) - SHOWN_PEOPLE
    if others > 0:
        text += Markup("; and {} other {}").format(others, "person" if others == 1 else "people")
    if kernels:
        text += Markup("; ") + kernels
    return text + Markup("; ") + turned_away if refused else text


KERNEL_VERBS = {
    "start": "started",
    "restart": "restarted",
    "interrupt": "interrupted",
    "shutdown": "shut down",
}


def _kernel_calls(calls: list[Any]) -> Markup:
    """`a.jansen started 1 kernel; b.devries shut down 2 kernels` (the batch summary's
    kernel calls over the workspace's REST API)."""
    said = []
    for call in calls:
        if not isinstance(call, dict) or call.get("action") not in KERNEL_VERBS:
            continue
        said.append(
            Markup("{} {} {}").format(
                call.get("person") or "someone",
                KERNEL_VERBS[call["action"]],
                _count(int(call.get("count") or 0), "kernel"),
            )
        )
    return Markup("; ").join(said)


def _exported(r: Record) -> Markup:
    count, calls = r.get("count"), r.get("kernel_calls")
    how_many = Markup(" ({})").format(_count(count, "execution")) if count is not None else ""
    if count is not None and calls:  # an export before kernel calls were exported has none
        how_many = Markup(" ({}, {})").format(
            _count(count, "execution"), _count(calls, "kernel call")
        )
    return Markup("{} exported the activity of {}{} for an access request").format(
        r.who, r.get("person") or "a person", how_many
    )


SENTENCES: dict[str, Callable[[Record], Markup]] = {
    "audit.genesis": _genesis,
    "init": lambda r: Markup("{} initialised this installation's HOME").format(r.who),
    "validate.refused": lambda r: Markup("{}'s validation found errors{}").format(
        r.who, _problems(r)
    ),
    "apply": _applied,
    "apply.refused": lambda r: Markup("{}'s apply was refused{}; nothing changed").format(
        r.who, _problems(r)
    ),
    "apply.failed": lambda r: Markup("{}'s apply failed: {}").format(r.who, r.get("error", "")),
    "hub.sync": _hub_sync,
    "hub.token": _token,
    "passwd": lambda r: Markup("{} set the password of {}").format(r.who, r.get("user", "")),
    "demo": lambda r: Markup("{} wrote the demo data ({} size)").format(r.who, r.get("size", "")),
    "expiry.stop": lambda r: Markup(
        "The dossier expired on {}: its workspace was stopped and its extracts removed"
    ).format(r.get("expired", "")),
    "workspace.open": lambda r: Markup("{} opened the workspace").format(r.who),
    "workspace.start": lambda r: Markup("{} started the workspace").format(r.who),
    "report.run": _run_started,
    "report.finished": _run_finished,
    "report.release": _released,
    "report.read": _read,
    "report.show": lambda r: Markup("{} looked at the page of {}").format(r.who, r.run),
    "dossier.show": lambda r: Markup("{} looked at the dossier's page").format(r.who),
    "audit.show": lambda r: Markup("{} read this audit trail").format(r.who),
    "admin.overview": lambda r: Markup("{} looked at the admin overview").format(r.who),
    "workspace.executions": _executions,
    "executions.show": lambda r: Markup("{} looked at who ran what in the workspace").format(r.who),
    "executions.latest": lambda r: Markup("{} looked at who last ran the cells of {}").format(
        r.who, r.get("path") or "a notebook"
    ),
    "executions.mine": lambda r: Markup("{} looked at their own activity").format(r.who),
    "executions.export": _exported,
}

# What a refused action was asked for, in words: "anna was refused <this>: <why>".
ASKED: dict[str, Callable[[Record], Markup]] = {
    "workspace.open": lambda r: Markup("the workspace"),
    "workspace.start": lambda r: Markup("a start of the workspace"),
    "report.run": lambda r: Markup("a run of {}").format(r.get("template") or "a template"),
    "report.release": lambda r: Markup("the release of {}").format(r.run),
    "report.read": lambda r: Markup("the report of {}").format(r.run),
    "report.show": lambda r: Markup("the page of {}").format(r.run),
    "dossier.show": lambda r: Markup("the dossier's page"),
    "audit.show": lambda r: Markup("this audit trail"),
    "admin.overview": lambda r: Markup("the admin overview"),
    "executions.show": lambda r: Markup("who ran what in the workspace"),
    "executions.latest": lambda r: Markup("who last ran the cells of {}").format(
        r.get("path") or "a notebook"
    ),
    "executions.mine": lambda r: Markup("their own activity"),
    "executions.export": lambda r: Markup("an export of the activity of {}").format(
        r.get("person") or "a person"
    ),
}


def _refused(r: Record, asked: str) -> Markup:
    what = ASKED[asked](r) if asked in ASKED else Markup("{}").format(asked.replace(".", " "))
    return Markup("{} was refused {}{}").format(r.who, what, _because(r))


def _generic(r: Record) -> Markup:
    """An action this version does not know: who did it, what it is called, what it names."""
    action = str(r.row.get("action") or "something")
    text = Markup("{} did {}").format(r.who, action.replace(".", " "))
    if r.get("run"):
        text += Markup(" ({})").format(r.run)
    return text


def known(action: str) -> bool:
    """Whether `action` has a sentence of its own (a refusal: its action has one in ASKED)."""
    if action in SENTENCES:
        return True
    return action.endswith(REFUSED) and action.removesuffix(REFUSED) in ASKED


def sentence(row: dict[str, Any], runs_url: str) -> Markup:
    """The record as one sentence of safe HTML (every value escaped), ending with a full stop."""
    r = Record(row, runs_url)
    action = str(row.get("action") or "")
    if action in SENTENCES:
        text = SENTENCES[action](r)
    elif action.endswith(REFUSED):
        text = _refused(r, action.removesuffix(REFUSED))
    else:
        text = _generic(r)
    return text if str(text).endswith((".", "…")) else text + Markup(".")

"""Unix identities per dossier, and file modes that confine them.

Run as root, each dossier has two identities of this installation's own:

- `<prefix>-<id>` runs the workspace: it reads extracts/<id> (its group owns them) and reads
  and writes workspaces/<id>, nothing else of HOME;
- `<prefix>r-<id>` runs report kernels: it reads extracts/<id> (a member of the workspace's
  group) and writes only its own run's folder under scratch/<id>, which the workspace
  identity cannot even enter.

They are made when first needed (serve's start, a workspace's start, a report run). A name
belongs to the HOME recorded as its account's home folder; a name owned by another live
installation on the machine is refused (IdentityClash), never shared. One whose installation
is gone (that HOME no longer holds secrets/master.key) is taken over. Not run as root (a
laptop), there is one identity and isolation is off; `isolation_enabled` says which.

With `hub.spawner: kubernetes` the workspace runs as a pod, as the dossier's number of
isolation/podids.py rather than as `<prefix>-<id>`: its extracts' group and its workspace
folder's owner are that number (`dossier_owner`), handed out at apply, so a workspace's start
never allocates one. Report kernels still run here, as `<prefix>r-<id>`, with that number as
an extra group so that they read the same extracts.

There, too, the hub and the service are not root but run in pods as one control identity
(`kubernetes.control_uid`): what root holds of HOME on one machine is that identity's
(`control_owner`, given by apply: `secure_home`, `secure_extracts`), with the same modes, so the
hub and the service read and write HOME's control files as their owner and no pod needs a
group or an fsGroup for it. Off pods the control identity is root and nothing changes.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import os
import pwd
import secrets
import shutil
import stat
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from dossierhub.isolation.podids import pod_id, recorder_pod_id, report_pod_id
from dossierhub.isolation.safefs import DIR_FLAGS, READ_FLAGS, opened_dir, remove_tree
from dossierhub.state.executions import SPOOL_FOLDER_MODE
from dossierhub.state.home import Home
from dossierhub.state.settings import load_settings

NOLOGIN = "/usr/sbin/nologin"


class IdentityClash(Exception):
    """A Unix name this installation needs belongs to something else on the machine."""


def isolation_enabled() -> bool:
    return os.geteuid() == 0


@dataclass(frozen=True)
class Identity:
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]  # every group it runs with, its own first


@dataclass(frozen=True)
class DossierIdentities:
    workspace: Identity
    report: Identity


def workspace_name(home: Home, dossier_id: str) -> str:
    """`<prefix>-<id>`: at most 6 + 1 + 24 = 31 characters, within Linux's 32."""
    return f"{load_settings(home).isolation.prefix}-{dossier_id}"


def report_name(home: Home, dossier_id: str) -> str:
    return f"{load_settings(home).isolation.prefix}r-{dossier_id}"


def _account_home(home: Home, dossier_id: str, report: bool) -> Path:
    return home.scratch_parent(dossier_id) if report else home.workspace_dir(dossier_id)


def _names(home: Home, dossier_id: str) -> list[tuple[str, Path, str]]:
    """(name, account home folder, account comment) of the workspace and report identity."""
    return [
        (
            workspace_name(home, dossier_id),
            home.workspace_dir(dossier_id),
            f"dossierhub workspace {dossier_id}",
        ),
        (
            report_name(home, dossier_id),
            home.scratch_parent(dossier_id),
            f"dossierhub reports {dossier_id}",
        ),
    ]


def _taken_over(entry: pwd.struct_passwd, ours: Path, comment: str) -> bool:
    """An account dossierhub made for the same dossier of an installation that is gone: its
    comment is ours, its home folder is `<HOME>/workspaces/<id>` or `<HOME>/scratch/<id>`,
    and that HOME no longer holds secrets/master.key. Any other account is never touched."""
    theirs = Path(entry.pw_dir)
    return (
        entry.pw_gecos == comment
        and theirs.name == ours.name
        and theirs.parent.name == ours.parent.name
        and not Home(theirs.parent.parent).master_key_file.exists()
    )


def clash(home: Home, dossier_id: str) -> str | None:
    """Why this installation cannot use the dossier's Unix names, or None when it can."""
    fix = (
        "give this installation a prefix of its own in settings.yaml (isolation.prefix), "
        "or remove the other account"
    )
    for name, ours, comment in _names(home, dossier_id):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            try:
                grp.getgrnam(name)
            except KeyError:
                continue
            return f"the Unix group {name} exists but was not made by dossierhub: {fix}"
        if entry.pw_dir == str(ours) and entry.pw_gecos == comment:
            continue
        if _taken_over(entry, ours, comment):
            continue
        owner = (
            f"another installation (its home folder is {entry.pw_dir})"
            if entry.pw_gecos == comment
            else f"another account (home folder {entry.pw_dir}, comment {entry.pw_gecos!r})"
        )
        return f"the Unix user {name} belongs to {owner}; this one's would be {ours}: {fix}"
    return None


def _lookup(name: str) -> Identity | None:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    extra = [g.gr_gid for g in grp.getgrall() if name in g.gr_mem and g.gr_gid != entry.pw_gid]
    return Identity(name, entry.pw_uid, entry.pw_gid, (entry.pw_gid, *sorted(extra)))


def identities(home: Home, dossier_id: str) -> DossierIdentities | None:
    """The dossier's identities if both exist and are this installation's, else None."""
    found = []
    for name, ours, comment in _names(home, dossier_id):
        identity = _lookup(name)
        if identity is None:
            return None
        entry = pwd.getpwnam(name)
        if entry.pw_dir != str(ours) or entry.pw_gecos != comment:
            return None
        found.append(identity)
    return DossierIdentities(*found)


def ensure_identities(home: Home, dossier_id: str) -> DossierIdentities:
    """Create the dossier's two system users if missing (idempotent); IdentityClash when a
    name belongs to another installation."""
    found = identities(home, dossier_id)
    if found is not None and found.workspace.gid in found.report.groups:
        return found  # the common case, without the lock
    home.locks_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(home.identities_lock_file)):  # runs start many at once
        return _make_identities(home, dossier_id)


def _make_identities(home: Home, dossier_id: str) -> DossierIdentities:
    problem = clash(home, dossier_id)
    if problem is not None:
        raise IdentityClash(f"dossier {dossier_id}: {problem}")
    (workspace, workspace_home, workspace_comment), (report, report_home, report_comment) = _names(
        home, dossier_id
    )
    for name, account_home, _ in _names(home, dossier_id):
        entry = _lookup(name)
        if entry is not None and pwd.getpwnam(name).pw_dir != str(account_home):
            _adopt(entry, account_home, (workspace,) if name == report else ())
    if _lookup(workspace) is None:
        _useradd(workspace, workspace_home, workspace_comment)
    if _lookup(report) is None:
        _useradd(report, report_home, report_comment, groups=(workspace,))
    found = identities(home, dossier_id)
    assert found is not None
    if found.workspace.gid not in found.report.groups:  # reads the extracts, as the workspace
        usermod = shutil.which("usermod") or "/usr/sbin/usermod"
        subprocess.run([usermod, "--append", "--groups", workspace, report], check=True)
        found = identities(home, dossier_id)
        assert found is not None
    return found


def _adopt(identity: Identity, account_home: Path, groups: tuple[str, ...]) -> None:
    """Take over the account of an installation that is gone (`_taken_over`). Whatever still
    runs as it belongs to that installation and would read this one's data: it is killed
    first. Its groups are reset to what it needs."""
    pkill = shutil.which("pkill") or "/usr/bin/pkill"
    usermod = shutil.which("usermod") or "/usr/sbin/usermod"
    for _ in range(50):
        subprocess.run([pkill, "-KILL", "-u", str(identity.uid)], check=False)
        moved = subprocess.run(
            [usermod, "--home", str(account_home), "--groups", ",".join(groups), identity.name],
            capture_output=True,
            check=False,
        )
        if moved.returncode == 0:
            return
        time.sleep(0.1)  # a process was still being reaped
    raise IdentityClash(f"could not take over the Unix user {identity.name}: {moved.stderr!r}")


def _useradd(name: str, account_home: Path, comment: str, groups: tuple[str, ...] = ()) -> None:
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    extra = ["--groups", ",".join(groups)] if groups else []
    subprocess.run(
        [
            useradd,
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            str(account_home),
            "--shell",
            NOLOGIN,
            "--comment",
            comment,
            *extra,
            name,
        ],
        check=True,
        capture_output=True,
    )


def secure_home(home: Home) -> None:
    """Traversable but not listable; private parts closed to everyone but root (on pods:
    but the control identity, to which they are then handed over)."""
    for added in (home.scratch_dir, home.logs_dir):  # HOMEs made before they existed
        added.mkdir(exist_ok=True)
    for folder, mode in (
        (home.root, 0o711),
        (home.extracts_dir, 0o711),
        (home.workspaces_dir, 0o711),
        (home.reports_dir, 0o711),
        (home.scratch_dir, 0o711),
        (home.logs_dir, 0o700),
        (home.master_key_file.parent, 0o700),
        (home.hub_dir, 0o700),
        (home.audit_dir, 0o700),
        (home.locks_dir, 0o700),
        (home.dossiers_dir, 0o700),
    ):
        if folder.exists():
            os.chmod(folder, mode)
    for private in (home.catalog_file, home.settings_file):
        if private.exists():
            os.chmod(private, 0o600)
    # in apply's pod raw/ is mounted read-only (chmod fails there even as a no-op);
    # raw_problem refused the apply before anything was built if its mode was not this
    if home.raw_dir.exists() and stat.S_IMODE(home.raw_dir.stat().st_mode) != 0o700:
        os.chmod(home.raw_dir, 0o700)
    owner = control_owner(home)
    if owner != ROOT:
        hand_over(home, owner)


def raw_problem(home: Home) -> str | None:
    """Why raw/ is not root's alone where apply cannot make it so: apply's pod mounts it
    read-only (deploy/chart), and the hub's and the service's pods mount the whole of HOME,
    so a raw/ left readable by others would give them the raw sources. None when it is
    root's 0700, or writable (then secure_home makes it so)."""
    raw = home.raw_dir
    if not raw.is_dir() or not os.statvfs(raw).f_flag & os.ST_RDONLY:
        return None
    info = raw.stat()
    if info.st_uid == 0 and stat.S_IMODE(info.st_mode) == 0o700:
        return None
    return (
        f"is mounted read-only here and is uid {info.st_uid}'s with mode "
        f"{stat.S_IMODE(info.st_mode):04o}: pods that mount HOME could read the raw sources"
    )


def on_pods(home: Home) -> bool:
    """Workspaces run as pods (hub.spawner: kubernetes), as the dossier's number."""
    return load_settings(home).hub.spawner == "kubernetes"


ROOT = (0, 0)


def control_owner(home: Home) -> tuple[int, int]:
    """Who holds HOME's control files (settings, manifests, hub/, audit/, the locks, runs,
    logs, templates) and owns the extracts: root on one machine; on pods the uid and gid
    `kubernetes.control_uid`, as which the hub's and the service's pods run."""
    if not on_pods(home):
        return ROOT
    number = load_settings(home).kubernetes.control_uid
    return (number, number)


def hand_over(home: Home, owner: tuple[int, int]) -> None:
    """Give what root holds of HOME's control parts to `owner` (a group of root's becomes
    the owner's; another group, such as a run's workspace group, stays). Not handed over:
    HOME and its folders extracts/ and workspaces/ themselves (`0711`: passed, not written,
    by the hub and the service), the master key's folder and raw/ (apply's alone),
    DuckDB's spill folder (raw-derived), a dossier's extracts (`secure_extracts` gives
    those), and workspaces/<id> and scratch/<id> (a dossier's own). Follows no link and skips
    a file with more than one link: whoever can write in these folders could otherwise have
    root give away a file elsewhere on HOME."""
    # scratch/ itself: the service makes a report run's scratch/<id> in it (reports/jobs.py)
    for single in (home.catalog_file, home.settings_file, home.scratch_dir):
        _hand_over_entry(None, str(single), owner)
    trees = (home.dossiers_dir, home.templates_dir, home.reports_dir, home.logs_dir)
    for tree in (*trees, home.audit_dir, home.hub_dir, home.locks_dir):
        if not tree.is_dir() or tree.is_symlink():
            continue
        _hand_over_entry(None, str(tree), owner)
        for _, folders, files, fd in os.fwalk(tree, follow_symlinks=False):
            for name in (*folders, *files):
                _hand_over_entry(fd, name, owner)


def _hand_over_entry(dir_fd: int | None, name: str, owner: tuple[int, int]) -> None:
    try:
        info = os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    if info.st_uid != 0 or stat.S_ISLNK(info.st_mode):
        return
    if not stat.S_ISDIR(info.st_mode) and (not stat.S_ISREG(info.st_mode) or info.st_nlink != 1):
        return
    gid = owner[1] if info.st_gid == 0 else info.st_gid
    os.chown(name, owner[0], gid, dir_fd=dir_fd, follow_symlinks=False)


@dataclass(frozen=True)
class DossierOwner:
    """Who the dossier's files belong to: the group that reads extracts/<id> and the owner
    of workspaces/<id>, the workspace's identity on this machine or its pod's number."""

    extracts_gid: int
    workspace: tuple[int, int]  # uid, gid


def dossier_owner(
    home: Home, dossier_id: str, ids: DossierIdentities | None
) -> DossierOwner | None:
    """The one place that decides it. None: not yet known (no identities, isolation off),
    and then the extracts stay root's only. On pods the number is handed out here if the
    dossier has none yet (at apply, or serve's start for a HOME applied before)."""
    if on_pods(home):
        number = pod_id(home, dossier_id)
        return DossierOwner(number, (number, number))
    if ids is None:
        return None
    return DossierOwner(ids.workspace.gid, (ids.workspace.uid, ids.workspace.gid))


def secure_extracts(folder: Path, gid: int | None, owner: int = 0) -> None:
    """Extracts readable by the dossier's group only; never writable by it. Their owner is
    the control identity (root on one machine), which reads them to know a dossier's
    catalog. On pods that identity may write in extracts/<id>, so the walk goes through
    folder descriptors (safefs.py's rule): a folder swapped for a link while root walks
    leads nowhere, no link is followed, and a file with more than one link (one could lead
    elsewhere on HOME) or of another kind is left alone."""
    try:
        top = os.open(folder, DIR_FLAGS)
    except FileNotFoundError:
        return
    try:
        _secure_extract(top, folder, gid, owner, is_dir=True)
        _secure_extract_tree(top, folder, gid, owner)
    finally:
        os.close(top)


def _secure_extract_tree(dir_fd: int, where: Path, gid: int | None, owner: int) -> None:
    for name in os.listdir(dir_fd):
        try:
            info = os.lstat(name, dir_fd=dir_fd)
            if not (stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)):
                continue  # a link (the swap's ..data among them), a FIFO, a socket
            fd = os.open(name, READ_FLAGS, dir_fd=dir_fd)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # became a link since the lstat: not followed
                continue
            raise
        try:
            opened = os.fstat(fd)
            if stat.S_ISDIR(opened.st_mode):
                _secure_extract(fd, where / name, gid, owner, is_dir=True)
                _secure_extract_tree(fd, where / name, gid, owner)
            elif stat.S_ISREG(opened.st_mode) and opened.st_nlink == 1:
                _secure_extract(fd, where / name, gid, owner, is_dir=False)
        finally:
            os.close(fd)


def _secure_extract(fd: int, where: Path, gid: int | None, owner: int, *, is_dir: bool) -> None:
    """One entry, by its descriptor; an error names the entry (`where`, by its name)."""
    try:
        if gid is not None:
            os.fchown(fd, owner, gid)
        os.fchmod(fd, 0o750 if is_dir else 0o640)
    except OSError as exc:
        raise type(exc)(exc.errno, exc.strerror, str(where)) from None


def secure_dossier(home: Home, dossier_id: str, ids: DossierIdentities | None) -> None:
    """Run as root after apply built the dossier's extracts: readable by its owner's group
    (root only while it has none); on pods its workspace folder too, since no identity is
    made there later to own it."""
    owner = dossier_owner(home, dossier_id, ids)
    control = control_owner(home)[0]
    secure_extracts(home.extract_dir(dossier_id), owner.extracts_gid if owner else None, control)
    if owner is not None and on_pods(home):
        _own_folder(home.workspace_dir(dossier_id), owner.workspace, 0o700)
        own_execution_spool(home, dossier_id, recorder_pod_id(home, dossier_id))
    if load_settings(home).reports.backend == "kubernetes":
        # its report runs' Jobs run as it (reports/jobs.py), in folders scratch/<id> groups
        own_report_scratch(home, dossier_id, report_pod_id(home, dossier_id))


def _own_folder(folder: Path, owner: tuple[int, int], mode: int) -> Path:
    """A folder root creates in a folder only root can write; never a link."""
    folder.mkdir(parents=True, exist_ok=True)
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode):
        raise IdentityClash(f"{folder} is not a folder")
    os.chown(folder, *owner, follow_symlinks=False)
    os.chmod(folder, mode)
    return folder


def ensure_workspace_dir(home: Home, dossier_id: str, ids: DossierIdentities | None) -> Path:
    folder = home.workspace_dir(dossier_id)
    owner = dossier_owner(home, dossier_id, ids) if ids is not None else None
    if owner is None:
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    return _own_folder(folder, owner.workspace, 0o700)


class SpoolRefused(Exception):
    """A pod's execution spool folder cannot be made as its recorder needs it; says why."""


def own_execution_spool(home: Home, dossier_id: str, number: int) -> None:
    """Run as root (apply): audit/spool/<id>, the one folder of HOME the workspace pod's
    recorder mounts (kubespawner.py), as it needs it on a cluster: owned by the recorder's
    `number`, grouped to the control identity (the service, which reads and removes the
    batches and is not root there), setgid so every batch takes that group, closed to
    everyone else (SPOOL_FOLDER_MODE). audit/ and audit/spool/ stay the control identity's
    0700 (`secure_home`): the kubelet mounts the folder by its path, nobody passes through
    them. Opened by descriptor: the control identity writes in audit/spool/, and a link
    planted as audit/spool/<id> is refused, never followed (UnsafeFile)."""
    home.audit_dir.mkdir(mode=0o700, exist_ok=True)
    with opened_dir(home.audit_dir) as audit:
        with contextlib.suppress(FileExistsError):
            os.mkdir("spool", 0o700, dir_fd=audit)
        with opened_dir(Path("spool"), dir_fd=audit) as spool:
            with contextlib.suppress(FileExistsError):
                os.mkdir(dossier_id, 0o700, dir_fd=spool)
            with opened_dir(Path(dossier_id), dir_fd=spool) as folder:
                group = control_owner(home)[1]
                info = os.fstat(folder)
                if (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) != (
                    number,
                    group,
                    SPOOL_FOLDER_MODE,
                ):
                    # the setgid bit while the group is still root's own: as own_report_scratch
                    os.fchown(folder, number, os.getegid())
                    os.fchmod(folder, SPOOL_FOLDER_MODE)
                    os.fchown(folder, -1, group)
                if stat.S_IMODE(os.fstat(folder).st_mode) != SPOOL_FOLDER_MODE:
                    raise SpoolRefused(
                        f"{home.relative(home.execution_spool_dir(dossier_id))} did not keep "
                        f"mode {SPOOL_FOLDER_MODE:04o}: HOME's volume drops the setgid bit, "
                        "which the recorder's batches need to reach the service"
                    )


REPORT_SCRATCH_MODE = 0o2711
"""scratch/<id> for report Jobs: the control identity's, group the report number, setgid."""
RUN_SCRATCH_MODE = 0o1770
"""A Job's run folder (and its published/) once handed over: sticky, the group's to write."""


class ScratchRefused(Exception):
    """A report Job's scratch folder cannot be made as the walls need it; says why and the fix."""


def own_report_scratch(home: Home, dossier_id: str, number: int) -> None:
    """Run as root (apply; the service when it is root): scratch/<id> as the dossier's report
    Jobs need it. Its owner is the control identity, which makes the run folders in it; its
    group is the report number, with the setgid bit, so that every folder made in it takes
    that group: the service, which is not root on a cluster and cannot chown, gets a run
    folder the Job's number may write through its group (`new_report_scratch`). `0711`
    otherwise: passed by the kubelet that mounts a run folder, listed by nobody else. Opened
    by descriptor: the control identity writes in scratch/, and a link planted as
    scratch/<id> is refused, never followed (UnsafeFile). What the service could not remove
    of its runs (`remove_scratch`) is removed here."""
    with opened_dir(home.scratch_dir) as top:
        with contextlib.suppress(FileExistsError):
            os.mkdir(dossier_id, 0o700, dir_fd=top)
        with opened_dir(Path(dossier_id), dir_fd=top) as folder:
            info = os.fstat(folder)
            wanted = (control_owner(home)[0], number, REPORT_SCRATCH_MODE)
            if (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) != wanted:
                # the setgid bit first, while the group is root's own: the kernel drops it
                # from a chmod by one outside the folder's group without CAP_FSETID, which
                # apply's pod lacks; a later chown of a folder keeps it. (Only when it is
                # not yet so: a run folder made meanwhile would take root's group.)
                os.fchown(folder, wanted[0], os.getegid())
                os.fchmod(folder, REPORT_SCRATCH_MODE)
                os.fchown(folder, -1, number)
            _remove_left_over(folder)
            if stat.S_IMODE(os.fstat(folder).st_mode) != REPORT_SCRATCH_MODE:
                raise ScratchRefused(
                    f"{home.scratch_parent(dossier_id)} did not keep mode "
                    f"{REPORT_SCRATCH_MODE:04o}: HOME's volume drops the setgid bit, which "
                    "report Jobs need"
                )


LEFT_OVER = ".left-"
"""The prefix a run folder the service could not empty is renamed to, for apply to remove."""


def remove_scratch(scratch: Path) -> None:
    """Remove a run's scratch folder once the run has ended (its kernel or pod gone):
    descriptor by descriptor, following no link. Root removes all of it. The service on a
    cluster (the control identity) removes all a Job wrote in the folders it owns, but not
    the inside of a folder the Job made and closed: it renames what is left to
    `.left-<name>`, which apply (root) removes (`own_report_scratch`)."""
    if remove_tree(os.fspath(scratch)):
        return
    with contextlib.suppress(OSError):
        os.rename(scratch, scratch.parent / f"{LEFT_OVER}{scratch.name}")


def _remove_left_over(folder: int) -> None:
    """Run as root: what the service could not remove of its runs in scratch/<id>. Folders
    only, on descriptors (remove_tree follows no link, at any depth): the
    control identity writes here, and whatever it plants must neither steer nor stop apply."""
    for name in os.listdir(folder):
        with contextlib.suppress(FileNotFoundError):
            if name.startswith(LEFT_OVER) and stat.S_ISDIR(os.lstat(name, dir_fd=folder).st_mode):
                remove_tree(name, dir_fd=folder)  # any depth; what stays, stays for next time


def new_report_scratch(
    home: Home, dossier_id: str, number: int, subfolders: tuple[str, ...]
) -> Path:
    """A fresh run folder for a report Job in scratch/<id>/, with `subfolders` in it, made
    by the service as whoever it runs as: root, or on a cluster the control identity with no
    capability. Each is the service's own, `0700` until `open_report_scratch`, and of the
    report number's group, inherited from scratch/<id>'s setgid bit (no chown). ScratchRefused
    when scratch/<id> is not as apply leaves it, or the volume did not pass the group on."""
    parent = home.scratch_parent(dossier_id)
    if isolation_enabled():
        own_report_scratch(home, dossier_id, number)  # a HOME applied before this layout
    with opened_dir(parent) as folder:
        _check_report_scratch(folder, parent, number)
        name = secrets.token_hex(8)
        os.mkdir(name, 0o700, dir_fd=folder)
        try:
            with opened_dir(Path(name), dir_fd=folder) as run:
                for sub in subfolders:
                    os.mkdir(sub, 0o700, dir_fd=run)
                    with opened_dir(Path(sub), dir_fd=run) as inner:
                        _check_group(inner, parent / name / sub, number)
                _check_group(run, parent / name, number)
        except ScratchRefused:
            shutil.rmtree(name, dir_fd=folder)  # bad input leaves nothing half-done
            raise
    return parent / name


def _check_report_scratch(folder: int, where: Path, number: int) -> None:
    info = os.fstat(folder)
    expected = (os.geteuid(), number, REPORT_SCRATCH_MODE)
    if isolation_enabled() or (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == expected:
        return
    raise ScratchRefused(
        f"{where} is not ready for the dossier's report Jobs (owner {info.st_uid}, group "
        f"{info.st_gid}, mode {stat.S_IMODE(info.st_mode):04o}; they need owner {expected[0]}, "
        f"the service, group {number}, the report number, mode {REPORT_SCRATCH_MODE:04o}): "
        "run `dossierhub apply` with reports.backend: kubernetes"
    )


def _check_group(folder: int, where: Path, number: int) -> None:
    """The run folder's group is the report number: root gives it, the control identity must
    have inherited it. A volume that ignores the setgid bit leaves it the service's: refused,
    since the Job could not write it."""
    if isolation_enabled():
        os.fchown(folder, -1, number)
    gid = os.fstat(folder).st_gid
    if gid != number:
        raise ScratchRefused(
            f"{where} took group {gid}, not the report number {number}: HOME's volume does "
            "not pass a folder's group on through the setgid bit, which report Jobs need"
        )


def open_report_scratch(scratch: Path, number: int, subfolders: tuple[str, ...]) -> None:
    """Hand a run folder to its Job once the service has written the inputs: it and its
    `subfolders` sticky and writable by the report number's group (`RUN_SCRATCH_MODE`). The
    Job's number adds files but cannot remove, rename or rewrite the service's (the inputs:
    they are not its own, and the sticky bit keeps their names); the service, owner of every
    folder, removes all the Job's files afterwards."""
    with opened_dir(scratch) as run:
        for sub in subfolders:
            with opened_dir(Path(sub), dir_fd=run) as inner:
                _open_run_folder(inner, scratch / sub, number)
        _open_run_folder(run, scratch, number)


def _open_run_folder(folder: int, where: Path, number: int) -> None:
    if os.fstat(folder).st_gid != number:
        raise ScratchRefused(f"{where} is not of the report number {number}'s group")
    os.fchmod(folder, RUN_SCRATCH_MODE)


def ensure_scratch_parent(home: Home, dossier_id: str, ids: DossierIdentities | None) -> Path:
    """scratch/<id>: entered by the report identity only (root-owned, its group may pass)."""
    folder = home.scratch_parent(dossier_id)
    if ids is None:
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    return _own_folder(folder, (0, ids.report.gid), 0o710)


def prepare_dossier(home: Home, dossier_id: str) -> DossierIdentities:
    """Run as root before a workspace or a report kernel starts: the dossier's identities
    exist, read its extracts, and have their folders. On pods the report identity reads the
    extracts through the pod's number, an extra group it runs with."""
    ids = ensure_identities(home, dossier_id)
    owner = dossier_owner(home, dossier_id, ids)
    assert owner is not None
    secure_extracts(home.extract_dir(dossier_id), owner.extracts_gid, control_owner(home)[0])
    ensure_workspace_dir(home, dossier_id, ids)
    ensure_scratch_parent(home, dossier_id, ids)
    return with_extracts_group(home, dossier_id, ids)


def with_extracts_group(home: Home, dossier_id: str, ids: DossierIdentities) -> DossierIdentities:
    """The identities with the report identity also in the extracts' group: on pods that is
    the pod's number, which no Unix group names, so it is added here for every kernel."""
    owner = dossier_owner(home, dossier_id, ids)
    if owner is None or owner.extracts_gid in ids.report.groups:
        return ids
    report = ids.report
    groups = (*report.groups, owner.extracts_gid)
    return DossierIdentities(ids.workspace, Identity(report.name, report.uid, report.gid, groups))


def preexec_as(identity: Identity, workdir: Path) -> Callable[[], None]:
    """A Popen preexec_fn: become `identity` and start in `workdir` (no sandbox)."""

    def become() -> None:
        os.setgid(identity.gid)
        os.setgroups(list(identity.groups))
        os.setuid(identity.uid)
        os.chdir(workdir)

    return become

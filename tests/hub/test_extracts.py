"""apply builds minimised, filtered, pseudonymised extracts with DuckDB views over them."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import time
from pathlib import Path

import duckdb
import pytest
from filelock import FileLock

from dossier_kernel.provenance import PROVENANCE_FILE, ProvenanceError
from dossierhub import portal
from dossierhub.data.extracts import current_provenance
from dossierhub.data.generations import DATA_LINK
from dossierhub.state.home import Home
from dossierhub.state.problems import ReportRefused

from helpers import DOSSIERHUB, read_yaml, run_cli, tree_digest, write_yaml


def open_catalog(home: Path, dossier_id: str) -> duckdb.DuckDBPyConnection:
    """As a workspace does it: read-only, files found next to the catalog link."""
    folder = home / "extracts" / dossier_id
    con = duckdb.connect(str(folder / "catalog.duckdb"), read_only=True)
    con.execute(f"SET file_search_path = '{folder}'")
    return con


def raw(home: Path, name: str) -> duckdb.DuckDBPyRelation:
    return duckdb.sql(f"SELECT * FROM read_parquet('{home / 'raw' / name}.parquet')")


def contract_pseudonym(home: Path, dossier_id: str, value: object) -> str:
    master = bytes.fromhex((home / "secrets" / "master.key").read_text().strip())
    key = hmac.new(master, f"dossier:{dossier_id}".encode(), hashlib.sha256).digest()
    return hmac.new(key, str(value).encode(), hashlib.sha256).digest()[:16].hex()


def add_dossier(home: Path, dossier_id: str, **overrides: object) -> None:
    manifest = {
        "id": dossier_id,
        "title": f"Test dossier {dossier_id}",
        "purpose": "Testing.",
        "legal_basis": "GDPR art. 6(1)(e)",
        "expires": "2099-12-31",
        "members": {"lead": ["t.lead"]},
        "sources": {
            "people": {
                "from": "residents",
                "columns": ["bsn", "district"],
                "pseudonymize": ["bsn"],
            },
        },
    }
    manifest.update(overrides)
    write_yaml(home / "dossiers" / f"{dossier_id}.yaml", manifest)


# ------------------------------------------------------------------ what a workspace sees


def test_views_hold_exactly_the_approved_columns_and_rows(applied_home: Path) -> None:
    con = open_catalog(applied_home, "armoede")
    views = {
        r[0]
        for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
    }
    assert views == {"residents", "households", "incomes", "payments"}
    assert [c[0] for c in con.execute("DESCRIBE residents").fetchall()] == [
        "bsn",
        "household_id",
        "district",
        "area",
        "birth_year",
    ]
    assert (
        con.execute("SELECT count(*) FROM residents").fetchall()[0][0]
        == raw(applied_home, "residents").count("*").fetchall()[0][0]
    )
    # incomes has `where: year = 2025`
    assert con.execute("SELECT DISTINCT year FROM incomes").fetchall() == [(2025,)]
    assert (
        con.execute("SELECT count(*) FROM incomes").fetchall()[0][0]
        == duckdb.execute(
            f"SELECT count(*) FROM read_parquet('{applied_home}/raw/incomes.parquet') "
            "WHERE year = 2025"
        ).fetchall()[0][0]
    )


def test_views_carry_catalog_comments(applied_home: Path) -> None:
    con = open_catalog(applied_home, "armoede")
    comment = con.execute(
        "SELECT comment FROM duckdb_views() WHERE view_name = 'residents'"
    ).fetchall()[0][0]
    assert comment.startswith("Residents register extract.")
    columns = dict(
        con.execute(
            "SELECT column_name, comment FROM duckdb_columns() WHERE table_name = 'residents'"
        ).fetchall()
    )
    assert columns["bsn"] == "pseudonym (identifier): citizen service number"
    assert columns["birth_year"].startswith("quasi-identifier")


def test_identifiers_are_the_contract_pseudonyms(applied_home: Path) -> None:
    con = open_catalog(applied_home, "armoede")
    raw_bsns = [r[0] for r in raw(applied_home, "residents").limit(50).fetchall()]
    expected = {contract_pseudonym(applied_home, "armoede", b) for b in raw_bsns}
    stored = {r[0] for r in con.execute("SELECT bsn FROM residents").fetchall()}
    assert expected <= stored
    assert all(len(p) == 32 for p in stored)


def test_pseudonymised_join_matches_raw_join(applied_home: Path) -> None:
    con = open_catalog(applied_home, "armoede")
    pseudonymised = con.execute(
        "SELECT count(*) FROM residents r JOIN payments p ON r.bsn = p.bsn"
    ).fetchall()[0][0]
    households = con.execute(
        "SELECT count(*) FROM residents r JOIN households h USING (household_id)"
    ).fetchall()[0][0]
    base = applied_home / "raw"
    raw_join = duckdb.execute(
        f"SELECT count(*) FROM '{base}/residents.parquet' r "
        f"JOIN '{base}/benefit_payments.parquet' p ON r.bsn = p.bsn"
    ).fetchall()[0][0]
    raw_households = duckdb.execute(
        f"SELECT count(*) FROM '{base}/residents.parquet' r "
        f"JOIN '{base}/households.parquet' h USING (household_id)"
    ).fetchall()[0][0]
    assert pseudonymised == raw_join > 0
    assert households == raw_households > 0


def test_two_dossiers_cannot_link_people(home: Path) -> None:
    add_dossier(home, "jeugd")
    assert run_cli(home, "apply").exit_code == 0
    armoede = {
        r[0] for r in open_catalog(home, "armoede").execute("SELECT bsn FROM residents").fetchall()
    }
    jeugd = {r[0] for r in open_catalog(home, "jeugd").execute("SELECT bsn FROM people").fetchall()}
    assert len(armoede) == len(jeugd) > 0
    assert len(armoede & jeugd) == 0


def test_no_raw_values_paths_or_key_bytes_in_extracts(applied_home: Path) -> None:
    master_hex = (applied_home / "secrets" / "master.key").read_text().strip()
    master = bytes.fromhex(master_hex)
    dossier_key = hmac.new(master, b"dossier:armoede", hashlib.sha256).digest()
    forbidden = [
        master,
        master_hex.encode(),
        dossier_key,
        dossier_key.hex().encode(),
        str(applied_home / "raw").encode(),
        b"raw/residents.parquet",
        b"raw/benefit_payments.parquet",
        b"raw/households.parquet",
    ]
    raw_bsn = {str(r[0]) for r in raw(applied_home, "residents").project("bsn").fetchall()}
    raw_households = {
        str(r[0]) for r in raw(applied_home, "households").project("household_id").fetchall()
    }
    folder = applied_home / "extracts" / "armoede"
    files = [p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()]
    assert {p.suffix for p in files} == {".parquet", ".duckdb", ".json"}
    for path in files:
        data = path.read_bytes()
        for needle in forbidden:
            assert needle not in data, f"{needle[:12]!r}... found in {path.name}"
        # parquet pages are compressed: also look at every decoded value
        if path.suffix == ".parquet":
            table = duckdb.sql(f"SELECT * FROM read_parquet('{path}')")
            for column in table.columns:
                values = {str(r[0]) for r in table.project(f'"{column}"').distinct().fetchall()}
                assert not values & raw_bsn, f"raw BSN in {path.name}:{column}"
                if column == "household_id":
                    assert not values & raw_households
        # the few-byte-long ids also must not appear as text anywhere
        text = data.decode("latin-1")
        assert not any(b in text for b in list(raw_bsn)[:200])
    sql = [
        r[0]
        for r in open_catalog(applied_home, "armoede")
        .execute("SELECT sql FROM duckdb_views() WHERE NOT internal")
        .fetchall()
    ]
    assert all("read_parquet('" in s and "/" not in s.split("read_parquet('")[1] for s in sql)


def test_provenance_records_fingerprints_rows_and_policy(applied_home: Path) -> None:
    provenance = json.loads((applied_home / "extracts/armoede/provenance.json").read_text())
    assert provenance["dossier"] == "armoede" and provenance["tool_version"]
    incomes = provenance["views"]["incomes"]
    assert incomes["rows_in"] > incomes["rows_out"] > 0
    assert len(incomes["source_fingerprint"]) == len(incomes["policy_hash"]) == 64
    data = (applied_home / "extracts/armoede/incomes.parquet").read_bytes()
    assert incomes["sha256"] == hashlib.sha256(data).hexdigest()
    assert str(applied_home) not in json.dumps(provenance)


# ------------------------------------------------------------------ incremental, expiry, removal


def test_second_apply_does_no_rework(home: Path) -> None:
    assert run_cli(home, "apply").exit_code == 0
    before = tree_digest(home / "extracts")
    again = run_cli(home, "apply")
    assert again.exit_code == 0
    assert "armoede: up to date" in again.stdout
    assert tree_digest(home / "extracts") == before


def test_changed_source_rebuilds_only_its_views(home: Path) -> None:
    assert run_cli(home, "apply").exit_code == 0
    old = json.loads((home / "extracts/armoede/provenance.json").read_text())
    payments = home / "raw" / "benefit_payments.parquet"
    os.utime(payments, ns=(time.time_ns(), time.time_ns()))
    result = run_cli(home, "apply", "armoede")
    assert result.exit_code == 0, result.stderr
    new = json.loads((home / "extracts/armoede/provenance.json").read_text())
    assert new["generation"] != old["generation"]
    assert new["views"]["payments"]["built_at"] >= old["views"]["payments"]["built_at"]
    assert (
        new["views"]["payments"]["source_fingerprint"]
        != old["views"]["payments"]["source_fingerprint"]
    )
    for view in ("residents", "households", "incomes"):
        assert new["views"][view] == old["views"][view]
    assert "reused" in result.stdout


def test_policy_change_rebuilds_and_pseudonyms_stay_stable(home: Path) -> None:
    assert run_cli(home, "apply", "armoede").exit_code == 0
    before = {
        r[0] for r in open_catalog(home, "armoede").execute("SELECT bsn FROM payments").fetchall()
    }
    manifest = read_yaml(home / "dossiers/armoede.yaml")
    manifest["sources"]["payments"]["where"] = "scheme <> 'kindregeling'"
    write_yaml(home / "dossiers/armoede.yaml", manifest)
    assert run_cli(home, "apply", "armoede").exit_code == 0
    con = open_catalog(home, "armoede")
    assert (
        con.execute("SELECT count(*) FROM payments WHERE scheme = 'kindregeling'").fetchall()[0][0]
        == 0
    )
    after = {r[0] for r in con.execute("SELECT bsn FROM payments").fetchall()}
    assert after and after <= before


def test_expired_dossier_extracts_are_removed_reports_kept(home: Path) -> None:
    assert run_cli(home, "apply").exit_code == 0
    assert not (home / "extracts" / "woonfraude-2025").exists()
    report = home / "reports" / "mobiliteit" / "run-1" / "report.html"
    report.parent.mkdir(parents=True)
    report.write_text("<p>kept</p>")
    manifest = read_yaml(home / "dossiers/mobiliteit.yaml")
    manifest["expires"] = "2020-01-01"
    write_yaml(home / "dossiers/mobiliteit.yaml", manifest)
    result = run_cli(home, "apply")
    assert result.exit_code == 0
    assert "expired on 2020-01-01: extracts removed" in result.stdout
    assert not (home / "extracts" / "mobiliteit").exists()
    assert report.read_text() == "<p>kept</p>"
    assert (home / "extracts" / "armoede" / "catalog.duckdb").exists()


def test_an_expired_dossier_whose_chore_fails_stops_no_other_dossier(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chore that clears an expired dossier's notebook outputs runs in the team's own
    folder, where anything may have been left (it can run past its 600 s, or fail). What it
    does to apply is this dossier's failure alone: its extracts are still removed, every
    other dossier is built, and the apply is recorded."""
    from dossierhub.workspaces import workspacechores

    def timed_out(home: object, dossier_id: str, chore: str, *rest: object) -> str:
        raise OSError(f"the {chore} chore in workspace {dossier_id} took over 600 s")

    assert run_cli(home, "apply").exit_code == 0
    manifest = read_yaml(home / "dossiers/mobiliteit.yaml")
    manifest["expires"] = "2020-01-01"
    write_yaml(home / "dossiers/mobiliteit.yaml", manifest)
    monkeypatch.setattr(workspacechores, "run_chore", timed_out)
    result = run_cli(home, "apply", "--force")
    assert result.exit_code == 1
    assert (
        "mobiliteit: apply failed: expired on 2020-01-01: the clear-outputs chore in "
        "workspace mobiliteit took over 600 s"
    ) in " ".join(result.stderr.split())
    assert not (home / "extracts" / "mobiliteit").exists()
    assert (home / "extracts" / "armoede" / "catalog.duckdb").exists()
    last = json.loads((home / "audit" / "audit.jsonl").read_text().splitlines()[-1])
    assert last["action"] == "apply"
    statuses = {d["id"]: d["status"] for d in last["details"]["dossiers"]}
    assert statuses["mobiliteit"] == "failed" and statuses["armoede"] == "built"


def test_removed_manifest_deprovisions_the_dossier(home: Path) -> None:
    assert run_cli(home, "apply").exit_code == 0
    (home / "dossiers" / "mobiliteit.yaml").unlink()
    result = run_cli(home, "apply")
    assert result.exit_code == 0
    assert "deprovisioned" in result.stdout
    assert not (home / "extracts" / "mobiliteit").exists()
    assert (home / "extracts" / "armoede" / "catalog.duckdb").exists()


# ------------------------------------------------------------------ atomic and serialized


def test_failed_build_keeps_previous_extracts(home: Path) -> None:
    """A source that breaks halfway through a build: the old generation stays current."""
    csv = home / "raw" / "flaky.csv"
    rows = [f"{i},{i % 7}" for i in range(40_000)]
    csv.write_text("id,score\n" + "\n".join(rows) + "\n")
    catalog = read_yaml(home / "catalog.yaml")
    catalog["sources"]["flaky"] = {"title": "Flaky", "location": "raw/flaky.csv"}
    write_yaml(home / "catalog.yaml", catalog)
    add_dossier(
        home,
        "flaky",
        sources={
            "people": {
                "from": "residents",
                "columns": ["bsn", "district"],
                "pseudonymize": ["bsn"],
            },
            "scores": {"from": "flaky", "columns": ["id", "score"]},
        },
    )
    assert run_cli(home, "apply", "flaky").exit_code == 0
    before = tree_digest(home / "extracts" / "flaky")
    # a value far past the CSV sniffer's sample that does not fit the column's type
    csv.write_text("id,score\n" + "\n".join(rows) + "\n40001,not-a-number\n")
    result = run_cli(home, "apply", "flaky", "--force")
    assert result.exit_code == 1
    assert "flaky: apply failed" in result.stderr
    assert "previous extracts are unchanged" in result.stderr
    assert tree_digest(home / "extracts" / "flaky") == before
    assert (
        open_catalog(home, "flaky").execute("SELECT count(*) FROM scores").fetchall()[0][0]
        == 40_000
    )


def test_applies_of_one_dossier_are_serialized(home: Path) -> None:
    """A second apply of a dossier waits for the first, says so, and then does its work."""
    assert run_cli(home, "apply", "armoede").exit_code == 0
    lock = FileLock(str(Home(home).extract_lock_file("armoede")))
    with lock:
        waiting = subprocess.Popen(
            [DOSSIERHUB, "--home", str(home), "apply", "armoede", "--force"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert waiting.stderr is not None
        said = ""
        # its own pace: under load the process may take long to start, so wait for its words
        for line in waiting.stderr:
            said += line
            if "waiting for another apply of this dossier" in line:
                break
        assert "waiting for another apply of this dossier" in said, said
        time.sleep(0.5)
        assert waiting.poll() is None, "apply ran while another held the dossier"
    rest = waiting.stderr.read()
    waiting.stderr.close()
    assert waiting.wait(timeout=120) == 0, said + rest


def test_workspace_reads_new_generation_without_reopening(home: Path) -> None:
    """A kernel that opened the catalog keeps working after an apply swaps the extracts."""
    assert run_cli(home, "apply", "armoede").exit_code == 0
    con = open_catalog(home, "armoede")
    first = con.execute("SELECT count(*) FROM payments").fetchall()[0][0]
    manifest = read_yaml(home / "dossiers/armoede.yaml")
    manifest["sources"]["payments"]["where"] = "amount > 200"
    write_yaml(home / "dossiers/armoede.yaml", manifest)
    assert run_cli(home, "apply", "armoede").exit_code == 0
    second = con.execute("SELECT count(*) FROM payments").fetchall()[0][0]
    assert 0 < second < first


@pytest.mark.parametrize("dossier_id", ["armoede", "mobiliteit"])
def test_group_by_through_view_equals_read_parquet(applied_home: Path, dossier_id: str) -> None:
    con = open_catalog(applied_home, dossier_id)
    view = "residents" if dossier_id == "armoede" else "residents_per_area"
    via_view = con.execute(
        f"SELECT district, count(*) FROM {view} GROUP BY 1 ORDER BY 1"
    ).fetchall()
    folder = applied_home / "extracts" / dossier_id
    direct = duckdb.sql(
        f"SELECT district, count(*) FROM '{folder}/{view}.parquet' GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert via_view == direct and len(direct) == 8


# ------------------------------------------------------------------ the provenance contract


def spoil_provenance(home: Path, change) -> Path:
    """Change the current generation's provenance.json in place (as a bug or a hand would)."""
    path = home / "extracts" / "armoede" / DATA_LINK / PROVENANCE_FILE
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return path


def test_a_malformed_provenance_is_refused_by_the_hub_and_rebuilt_by_apply(home: Path) -> None:
    assert run_cli(home, "apply", "armoede").exit_code == 0
    path = spoil_provenance(home, lambda d: d["views"]["residents"].update(rows_out="3000"))
    said = "field views.residents.rows_out should be an integer, not str"
    with pytest.raises(ProvenanceError) as refused:
        current_provenance(Home(home).extract_dir("armoede"))
    assert str(path) in str(refused.value) and said in str(refused.value)
    with pytest.raises(ReportRefused) as told:  # the pages and the API: 409, in words
        portal.views_of(Home(home), "armoede")
    assert told.value.reason == "conflict" and str(refused.value) in str(told.value)
    result = run_cli(home, "apply", "armoede")
    assert result.exit_code == 0, result.stderr
    assert f"{said}); rebuilding every view" in result.stderr
    assert "reused" not in result.stdout
    rebuilt = current_provenance(Home(home).extract_dir("armoede"))
    assert rebuilt is not None and rebuilt.views["residents"].rows_out == 3000


def test_an_older_provenance_still_reads_and_its_views_are_reused(home: Path) -> None:
    """PROVENANCE_VERSION 1 (no quasi_identifiers, and before the output checks no disclosure,
    under another policy hash): read as it is, then replaced by apply without rebuilding."""
    assert run_cli(home, "apply", "armoede").exit_code == 0

    def version_1(data: dict) -> None:
        data.pop("disclosure")
        data["policy_hash"] = "0" * 64
        for view in data["views"].values():
            view.pop("quasi_identifiers")

    spoil_provenance(home, version_1)
    old = current_provenance(Home(home).extract_dir("armoede"))
    assert old is not None and old.disclosure == {}
    assert old.views["residents"].quasi_identifiers == ()
    assert {v["name"]: v["rows"] for v in portal.views_of(Home(home), "armoede")} == {
        name: view.rows_out for name, view in old.views.items()
    }
    result = run_cli(home, "apply", "armoede")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.count("reused") == 4
    new = current_provenance(Home(home).extract_dir("armoede"))
    assert new is not None and new.generation != old.generation
    assert new.views["residents"].quasi_identifiers == ("birth_year",)
    assert new.disclosure["min_count"] == 10

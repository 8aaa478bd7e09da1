"""The embedded demo: seeded synthetic municipal data for an Amsterdam-like city.

Nothing here describes real people. Identifiers look real on purpose (9-digit numbers passing
the BSN eleven-test), so the product's pseudonymisation and detection meet realistic input.
"""

from __future__ import annotations

import io
import json
import os
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl

from dossierhub.state.atomic import write_atomic, write_json
from dossierhub.state.directory import DossierEntry, read_directory
from dossierhub.state.home import Home
from dossierhub.state.settings import Settings, load_settings
from dossierhub.state.yamlfile import load_yaml
from dossierhub.workspaces.hub_auth import set_password
from dossierhub.workspaces.hubconfig import ports

# The demo's admin: oversees every dossier (the admin page), a member of none.
DEMO_ADMIN = "z.beheer"

# Stadsdelen with their gebieden and a rough share of the city's residents.
DISTRICTS: dict[str, tuple[float, list[str], tuple[int, int]]] = {
    "Centrum": (0.09, ["Centrum-West", "Centrum-Oost"], (1011, 1018)),
    "West": (0.15, ["Westerpark", "Bos en Lommer", "Oud-West/De Baarsjes"], (1051, 1058)),
    "Nieuw-West": (
        0.17,
        ["Geuzenveld/Slotermeer", "Osdorp", "De Aker/Sloten/Nieuw-Sloten", "Slotervaart"],
        (1060, 1069),
    ),
    "Zuid": (0.15, ["Oud-Zuid", "Buitenveldert/Zuidas", "De Pijp/Rivierenbuurt"], (1071, 1083)),
    "Oost": (
        0.14,
        [
            "Oud-Oost",
            "Indische Buurt/Oostelijk Havengebied",
            "Watergraafsmeer",
            "IJburg/Zeeburgereiland",
        ],
        (1086, 1098),
    ),
    "Noord": (0.11, ["Oud-Noord", "Noord-West", "Noord-Oost"], (1020, 1035)),
    "Zuidoost": (
        0.09,
        ["Bijlmer-West", "Bijlmer-Centrum", "Bijlmer-Oost", "Gaasperdam"],
        (1101, 1109),
    ),
    "Weesp": (0.02, ["Weesp/Driemond"], (1380, 1384)),
}
# Median disposable household income per district, euros per year (synthetic, plausible order).
INCOME_MEDIAN = {
    "Centrum": 48000,
    "West": 41000,
    "Nieuw-West": 33000,
    "Zuid": 56000,
    "Oost": 42000,
    "Noord": 35000,
    "Zuidoost": 30000,
    "Weesp": 45000,
}
SCHEMES = {
    "bijstand": (1150.0, 250.0),
    "huurtoeslag": (310.0, 60.0),
    "zorgtoeslag": (125.0, 10.0),
    "kindregeling": (95.0, 40.0),
}
MODES = ["fiets", "auto", "voetganger", "ov"]
HOURLY = np.array(
    [
        0.2,
        0.1,
        0.05,
        0.05,
        0.1,
        0.3,
        0.8,
        1.6,
        2.0,
        1.3,
        1.0,
        1.1,
        1.2,
        1.1,
        1.1,
        1.3,
        1.7,
        2.0,
        1.5,
        1.0,
        0.8,
        0.6,
        0.45,
        0.3,
    ]
)


def write_demo(home: Home, *, size: int, seed: int, log: Callable[[str], None]) -> list[str]:
    """Write raw data (unless the same size and seed are there), catalog and manifests."""
    raw, marker = home.raw_dir, home.demo_marker_file
    wanted = {"size": size, "seed": seed, "format": 1}
    written: list[str] = []
    current = json.loads(marker.read_text()) if marker.exists() else None
    if current != wanted:
        log(f"generating synthetic data for {size:,} residents (seed {seed})")
        raw.mkdir(parents=True, exist_ok=True)
        for name, frame in generate(size, seed).items():
            path = raw / f"{name}.parquet"
            data = io.BytesIO()
            frame.write_parquet(data, compression="zstd")
            write_atomic(path, data.getvalue())
            written.append(home.relative(path))
        write_json(marker, wanted)
    else:
        log(f"synthetic data for {size:,} residents already present")
    for path, text in demo_files(home).items():
        # an admin's own settings.yaml is theirs: the demo's (naming its admin) only if none
        if not path.exists() or _is_empty_catalog(home, path):
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, text)
            written.append(home.relative(path))
    return written


def demo_password(home: Home) -> str:
    """One random password for every demo account, set once per demo home (0600 file)."""
    path = home.demo_password_file
    if path.exists():
        return path.read_text().strip()
    password = secrets.token_urlsafe(9)
    members = {p for e in read_directory(home) for p in (*e.workers, *e.viewers)}
    people = sorted(members | set(load_settings(home).hub.admins))
    for person in people:
        set_password(home.passwords_file, person, password)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")
    return password


def _is_empty_catalog(home: Home, path: Path) -> bool:
    """`init` writes a catalog without sources; the demo may fill that one in."""
    if path != home.catalog_file:
        return False
    data = load_yaml(path, "catalog.yaml").data or {}
    return isinstance(data, dict) and not data.get("sources")


def bsn_numbers(rng: np.random.Generator, count: int) -> np.ndarray:
    """`count` distinct 9-digit numbers that pass the eleven-test, like real BSNs."""
    chosen = np.empty(0, dtype=np.int64)
    while len(chosen) < count:
        base = rng.integers(10_000_000, 99_999_999, size=int(count * 1.3) + 100, dtype=np.int64)
        digits = np.stack([(base // 10 ** (7 - i)) % 10 for i in range(8)], axis=1)
        check = (digits * np.arange(9, 1, -1)).sum(axis=1) % 11
        valid = check < 10
        numbers = base[valid] * 10 + check[valid]
        chosen = np.unique(np.concatenate([chosen, numbers]))
    return rng.permutation(chosen)[:count]


def generate(size: int, seed: int) -> dict[str, pl.DataFrame]:
    rng = np.random.default_rng(seed)
    names = list(DISTRICTS)
    shares = np.array([DISTRICTS[d][0] for d in names])
    shares /= shares.sum()

    # households first, then their members
    sizes = rng.choice(
        [1, 2, 3, 4, 5, 6], p=[0.5, 0.27, 0.1, 0.09, 0.03, 0.01], size=int(size / 1.9) + 10
    )
    sizes = sizes[: int(np.searchsorted(np.cumsum(sizes), size)) + 1]
    n_households = len(sizes)
    h_district = rng.choice(len(names), p=shares, size=n_households)
    h_area = _vector_area(rng, h_district, names)
    low = np.array([DISTRICTS[n][2][0] for n in names])
    high = np.array([DISTRICTS[n][2][1] for n in names])
    pc4 = rng.integers(low[h_district], high[h_district] + 1)
    letters = np.array(list("ABCDEGHJKLMNPRSTVWXZ"))
    pc_letters = np.char.add(
        letters[rng.integers(0, 20, n_households)], letters[rng.integers(0, 20, n_households)]
    )
    house_number = rng.integers(1, 400, n_households)
    household_id = rng.permutation(np.arange(n_households, dtype=np.int64)) + 700_000_000
    h_type = np.where(
        sizes == 1,
        "alleenstaand",
        np.where(
            sizes == 2,
            rng.choice(["paar", "eenoudergezin"], p=[0.8, 0.2], size=n_households),
            rng.choice(["gezin", "eenoudergezin"], p=[0.8, 0.2], size=n_households),
        ),
    )
    district_names = np.array(names)
    area_names = np.array(
        [DISTRICTS[names[d]][1][a] for d, a in zip(h_district, h_area, strict=True)]
    )
    households = pl.DataFrame(
        {
            "household_id": household_id,
            "address": np.char.add(
                np.char.add(np.char.add(pc4.astype(str), " "), pc_letters),
                np.char.add(" ", house_number.astype(str)),
            ),
            "postcode": pc4.astype(np.int32),
            "district": district_names[h_district],
            "area": area_names,
            "size": sizes.astype(np.int16),
            "type": h_type,
        }
    )

    # residents: members of their household
    member_of = np.repeat(np.arange(n_households), sizes)[:size]
    n = len(member_of)
    is_first = np.r_[True, member_of[1:] != member_of[:-1]]
    adult_year = rng.integers(1935, 2007, size=n)
    child_year = rng.integers(2007, 2026, size=n)
    birth_year = np.where(is_first | (rng.random(n) < 0.35), adult_year, child_year)
    residents = pl.DataFrame(
        {
            "bsn": bsn_numbers(rng, n),
            "household_id": household_id[member_of],
            "birth_year": birth_year.astype(np.int16),
            "sex": rng.choice(["V", "M", "X"], p=[0.505, 0.49, 0.005], size=n),
            "postcode": pc4[member_of].astype(np.int32),
            "district": district_names[h_district[member_of]],
            "area": area_names[member_of],
            "registered_since": (
                np.datetime64("2026-01-01")
                - rng.integers(0, 365 * 40, size=n).astype("timedelta64[D]")
            ),
        }
    )

    # incomes: disposable household income per year, log-normal around the district median
    median = np.array([INCOME_MEDIAN[d] for d in names])[h_district]
    base = median * rng.lognormal(0.0, 0.55, size=n_households)
    source = rng.choice(
        ["loon", "uitkering", "pensioen", "zelfstandig"],
        p=[0.62, 0.13, 0.17, 0.08],
        size=n_households,
    )
    base = np.where(source == "uitkering", np.minimum(base, 19_000 + 4_000 * sizes), base)
    incomes = pl.concat(
        [
            pl.DataFrame(
                {
                    "household_id": household_id,
                    "year": np.full(n_households, year, dtype=np.int16),
                    "disposable_income": np.round(base * growth, -1).astype(np.int32),
                    "income_source": source,
                }
            )
            for year, growth in ((2024, 1.0), (2025, 1.031))
        ]
    )

    # monthly benefit payments per person in 2025, month by month like a payment ledger
    h_income = base * 1.031
    poor = h_income[member_of] < 26_000
    receives = is_first & (poor | (rng.random(n) < 0.04))
    receivers = np.flatnonzero(receives)
    scheme_names = list(SCHEMES)
    scheme = np.where(
        source[member_of[receivers]] == "uitkering",
        0,
        rng.choice([1, 2, 3], p=[0.45, 0.35, 0.2], size=len(receivers)),
    )
    frames = []
    for month in range(1, 13):
        active = rng.random(len(receivers)) < 0.93
        who = receivers[active]
        kind = scheme[active]
        mean = np.array([SCHEMES[s][0] for s in scheme_names])[kind]
        spread = np.array([SCHEMES[s][1] for s in scheme_names])[kind]
        frames.append(
            pl.DataFrame(
                {
                    "bsn": residents["bsn"].to_numpy()[who],
                    "month": np.full(len(who), np.datetime64(f"2025-{month:02d}-01")),
                    "scheme": np.array(scheme_names)[kind],
                    "amount": np.round(np.maximum(10, rng.normal(mean, spread)), 2),
                }
            )
        )
    payments = pl.concat(frames)

    # mobility counts per area, hour and mode over four weeks
    areas = [(d, a) for d in names for a in DISTRICTS[d][1]]
    days = np.arange(np.datetime64("2025-10-06"), np.datetime64("2025-11-03"))
    grid = np.array(
        np.meshgrid(
            np.arange(len(areas)),
            np.arange(len(days)),
            np.arange(24),
            np.arange(len(MODES)),
            indexing="ij",
        )
    ).reshape(4, -1)
    weekend = np.isin((days.astype("datetime64[D]").view("int64") - 4) % 7, [5, 6])
    mode_level = np.array([140.0, 90.0, 70.0, 60.0])
    expected = (
        mode_level[grid[3]]
        * HOURLY[grid[2]]
        * np.where(weekend[grid[1]], 0.7, 1.0)
        * rng.lognormal(0, 0.3, size=len(areas))[grid[0]]
    )
    mobility = pl.DataFrame(
        {
            "district": np.array([a[0] for a in areas])[grid[0]],
            "area": np.array([a[1] for a in areas])[grid[0]],
            "date": days[grid[1]],
            "hour": grid[2].astype(np.int8),
            "mode": np.array(MODES)[grid[3]],
            "count": rng.poisson(expected).astype(np.int32),
        }
    )
    return {
        "residents": residents,
        "households": households,
        "incomes": incomes,
        "benefit_payments": payments,
        "mobility_counts": mobility,
    }


def _vector_area(rng: np.random.Generator, district: np.ndarray, names: list[str]) -> np.ndarray:
    counts = np.array([len(DISTRICTS[n][1]) for n in names])
    return (rng.random(len(district)) * counts[district]).astype(np.int64)


def demo_files(home: Home) -> dict[Path, str]:
    """catalog.yaml and the three demo manifests, as an admin would write them."""
    return {
        home.settings_file: SETTINGS,
        home.catalog_file: CATALOG,
        home.manifest_file("armoede"): ARMOEDE,
        home.manifest_file("mobiliteit"): MOBILITEIT,
        home.manifest_file("woonfraude-2025"): WOONFRAUDE,
    }


SETTINGS = f"""\
# Written by `dossierhub demo`: the demo's admin (the admin page; a member of no dossier).
hub:
  admins: [{DEMO_ADMIN}]
"""

CATALOG = """\
# Data sources of the demo city, described once by their stewards.
sources:
  residents:
    title: Residents register extract
    description: One row per registered resident on 2026-01-01 (synthetic).
    steward: BRP team
    classification: confidential
    location: raw/residents.parquet
    columns:
      bsn: {kind: identifier, description: citizen service number}
      household_id: {kind: identifier, description: household the resident belongs to}
      birth_year: {kind: quasi-identifier, description: year of birth}
      sex: {kind: quasi-identifier, description: "registered sex: V, M or X"}
      postcode: {kind: quasi-identifier, description: four-digit postcode (PC4)}
      district: {kind: attribute, description: stadsdeel}
      area: {kind: attribute, description: gebied (area within the stadsdeel)}
      registered_since: {kind: quasi-identifier, description: date of registration at the address}
  households:
    title: Households
    description: One row per household on 2026-01-01 (synthetic).
    steward: BRP team
    classification: confidential
    location: raw/households.parquet
    columns:
      household_id: {kind: identifier, description: household number}
      address: {kind: identifier, description: postcode and house number}
      postcode: {kind: quasi-identifier, description: four-digit postcode (PC4)}
      district: {kind: attribute, description: stadsdeel}
      area: {kind: attribute, description: gebied}
      size: {kind: quasi-identifier, description: number of residents}
      type: {kind: attribute, description: "alleenstaand, paar, gezin or eenoudergezin"}
  incomes:
    title: Disposable household income
    description: Yearly disposable income per household, 2024 and 2025 (synthetic).
    steward: Onderzoek en Statistiek
    classification: confidential
    location: raw/incomes.parquet
    columns:
      household_id: {kind: identifier, description: household number}
      year: {kind: attribute, description: income year}
      disposable_income: {kind: attribute, description: euros per year}
      income_source:
        kind: attribute
        description: "main source: loon, uitkering, pensioen or zelfstandig"
  benefit_payments:
    title: Benefit payments
    description: Monthly payments per person per scheme in 2025 (synthetic).
    steward: Werk, Participatie en Inkomen
    classification: special
    location: raw/benefit_payments.parquet
    columns:
      bsn: {kind: identifier, description: citizen service number of the recipient}
      month: {kind: attribute, description: first day of the month paid}
      scheme: {kind: attribute, description: "bijstand, huurtoeslag, zorgtoeslag or kindregeling"}
      amount: {kind: attribute, description: euros paid}
  mobility_counts:
    title: Mobility counts
    description: Counted passages per area, hour and mode, four weeks in autumn 2025 (synthetic).
    steward: Verkeer en Openbare Ruimte
    classification: open
    location: raw/mobility_counts.parquet
    columns:
      district: {description: stadsdeel}
      area: {description: gebied}
      date: {description: day of the count}
      hour: {description: "hour of day, 0-23"}
      mode: {description: "fiets, auto, voetganger or ov"}
      count: {description: passages counted}
"""

ARMOEDE = """\
id: armoede
title: Poverty measures 2026
purpose: Which poverty measures reach the households that need them, per district?
legal_basis: GDPR art. 6(1)(e), public task (Participatiewet)
expires: 2027-06-30
members:
  lead: [a.jansen, e.mulder]
  analyst: [b.devries, c.bakker]
  viewer: [d.visser]
sources:
  residents:
    from: residents
    columns: [bsn, household_id, district, area, birth_year]
    pseudonymize: [bsn, household_id]
  households:
    from: households
    columns: [household_id, district, area, size, type]
    pseudonymize: [household_id]
  incomes:
    from: incomes
    columns: [household_id, year, disposable_income, income_source]
    pseudonymize: [household_id]
    where: year = 2025
  payments:
    from: benefit_payments
    columns: [bsn, month, scheme, amount]
    pseudonymize: [bsn]
templates: [district_profile, data_quality]
"""

MOBILITEIT = """\
id: mobiliteit
title: Mobility and liveability 2026
purpose: How do cycling, driving and walking spread over areas and hours, relative to residents?
legal_basis: GDPR art. 6(1)(e), public task (Wegenverkeerswet, Omgevingswet)
expires: 2027-12-31
members:
  lead: [f.smit, g.meijer]
  analyst: [h.deboer]
  viewer: [d.visser]
disclosure:
  # a few passages in one area at night can be one person's trips
  min_count: 100
sources:
  counts:
    from: mobility_counts
    columns: [district, area, date, hour, mode, count]
  residents_per_area:
    from: residents
    columns: [district, area, birth_year]
templates: [mobility_report, data_quality]
"""

WOONFRAUDE = """\
id: woonfraude-2025
title: Housing fraud pilot 2025
purpose: Which signals predicted illegal holiday letting in 2025?
legal_basis: GDPR art. 6(1)(e), public task (Huisvestingswet)
expires: 2025-12-31
members:
  lead: [i.vos]
  analyst: [j.peters]
sources:
  residents:
    from: residents
    columns: [bsn, household_id, postcode, registered_since]
    pseudonymize: [bsn, household_id]
  households:
    from: households
    columns: [household_id, postcode, size]
    pseudonymize: [household_id]
templates: [data_quality]
"""


# ---------------------------------------------------------------- what the demo shows


# One run in each state a team meets, made with the real run and release functions as the
# people they belong to (each audited as usual): (dossier, template, author, parameters,
# releasing lead or None, what it shows).
EXAMPLES: tuple[tuple[str, str, str, dict[str, str], str | None, str], ...] = (
    ("armoede", "district_profile", "b.devries", {}, "a.jansen", "a released report"),
    (
        "armoede",
        "data_quality",
        "a.jansen",
        {"view": "households"},
        None,
        "a run waiting for release by e.mulder",
    ),
    (
        "mobiliteit",
        "mobility_report",
        "h.deboer",
        {"mode": "ov", "start": "2025-10-11", "end": "2025-10-11"},
        None,  # one night of public transport: hours under mobiliteit's min_count
        "a run whose output checks failed (released only with a justification)",
    ),
)


def make_examples(home: Home, log: Callable[[str], None]) -> list[str]:
    """The example runs, once per demo home (none made when a demo dossier has runs: the
    demo is being used). Returns one line per run, saying what it shows."""
    from dossierhub.reports.runs import run_report

    dossiers = {d for d, *_ in EXAMPLES}
    if any(home.runs_dir(d).is_dir() and any(home.runs_dir(d).iterdir()) for d in dossiers):
        log("example runs: the demo dossiers have runs already")
        return []

    def example(entry: tuple[str, str, str, dict[str, str], str | None, str]) -> str:
        dossier, template, author, parameters, releaser, shows = entry
        outcome = run_report(home, dossier, template, author, dict(parameters))
        if releaser is not None and outcome.succeeded:
            _release_example(home, dossier, outcome.run_id, releaser)
        return f"{dossier}/runs/{outcome.run_id}  {shows} ({outcome.status})"

    for dossier, template, author, _, _, shows in EXAMPLES:
        log(f"example run: {template} of {dossier} by {author} ({shows})")
    # the runs do not depend on each other: at once, as the service runs them (in threads,
    # each in its dossier's run slots), so the demo waits for the slowest, not for the sum
    with ThreadPoolExecutor(len(EXAMPLES), thread_name_prefix="example") as pool:
        return list(pool.map(example, EXAMPLES))


def demo_url(settings: Settings) -> str:
    """Where serve listens for people: the public port of hubconfig.ports, as serve binds it."""
    public = ports(settings)[0]
    return f"http://{settings.hub.ip}:{public}/"


SERVICE = "services/dossierhub/"  # the pages, under the hub's URL


def accounts(home: Home, settings: Settings) -> list[str]:
    """Every demo account by role, one line each: who they are where, what they can try."""
    roles: dict[str, list[str]] = {}
    for entry in read_directory(home):
        for person, role in _members(entry):
            roles.setdefault(person, []).append(f"{role} of {entry.id}")
    lines = [f"{p:<11}{', '.join(r)}" for p, r in sorted(roles.items())]
    lines += [f"{a:<11}admin (the admin page; a member of no dossier)" for a in settings.hub.admins]
    return lines


def _members(entry: DossierEntry) -> list[tuple[str, str]]:
    return [
        *((p, "lead") for p in entry.leads),
        *((p, "analyst") for p in entry.analysts),
        *((p, "viewer") for p in entry.viewers),
    ]


def _release_example(home: Home, dossier: str, run_id: str, lead: str) -> None:
    """Released by its lead through the one audited decision path, as the pages do."""
    from dossierhub.reports.release import release_run
    from dossierhub.state.decisions import decide, release_facts

    def release() -> dict[str, object]:
        return release_run(home, dossier, run_id, lead, None).as_json()

    decide(home, "report.release", lead, dossier, release, release_facts, run=run_id)

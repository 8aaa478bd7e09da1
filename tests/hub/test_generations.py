"""Atomic generations (data/generations.py) on a real folder, apart from any extract: readers
see one complete build while builds are swapped in, a failed build leaves nothing behind, old
builds are pruned, writers queue on the lock."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from dossierhub.data.generations import (
    DATA_LINK,
    GEN_PREFIX,
    TMP_PREFIX,
    build_generation,
    clean_leftovers,
    current,
    kept_generation,
    writer_lock,
)

SIZE = 1 << 20  # large enough that a torn or half-written file would show


def fill_with(marker: str, names: tuple[str, ...] = ("a.bin", "b.bin")):
    def fill(folder: Path, generation: str) -> str:
        for name in names:
            (folder / name).write_bytes(marker.encode() * SIZE)
        return marker

    return fill


def generations(folder: Path) -> list[str]:
    return sorted(
        e.name
        for e in folder.iterdir()
        if e.name.startswith(GEN_PREFIX) and e.name != DATA_LINK and not e.is_symlink()
    )


def test_readers_through_the_links_see_one_whole_build_during_swaps(tmp_path: Path) -> None:
    folder = tmp_path / "x"
    build_generation(folder, fill_with("0"))
    pairs: list[tuple[bytes, bytes]] = []  # both files of the build a reader resolved
    singles: list[bytes] = []  # one file opened through its stable link
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            singles.append((folder / "a.bin").read_bytes())
            data = current(folder).resolve()
            try:
                pairs.append(((data / "a.bin").read_bytes(), (data / "b.bin").read_bytes()))
            except FileNotFoundError:  # two builds on: pruned, as documented
                continue

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for marker in "123456789":
            build_generation(folder, fill_with(marker))
            time.sleep(0.02)
    finally:
        stop.set()
        reader.join()
    assert len(pairs) > 5 and len({a[:1] for a in singles}) > 2  # it read across swaps
    for whole in singles:
        assert len(whole) == SIZE and whole == whole[:1] * SIZE
    for a, b in pairs:
        assert a == b and len(a) == SIZE and a == a[:1] * SIZE


def test_a_failed_build_leaves_the_old_build_current_and_no_half_folder(tmp_path: Path) -> None:
    folder = tmp_path / "x"
    first, _ = build_generation(folder, fill_with("A"))
    before = sorted(os.listdir(folder))

    def half(build: Path, generation: str) -> None:
        (build / "a.bin").write_bytes(b"B" * SIZE)
        raise RuntimeError("the source broke halfway")

    with pytest.raises(RuntimeError, match="halfway"):
        build_generation(folder, half)
    assert sorted(os.listdir(folder)) == before
    assert os.readlink(folder / DATA_LINK) == f"{GEN_PREFIX}{first}"
    assert (folder / "a.bin").read_bytes() == b"A" * SIZE


def test_old_builds_are_pruned_keeping_the_one_before(tmp_path: Path) -> None:
    folder = tmp_path / "x"
    made = [build_generation(folder, fill_with(m))[0] for m in "ABCD"]
    assert generations(folder) == [f"{GEN_PREFIX}{g}" for g in made[-2:]]
    assert os.readlink(folder / DATA_LINK) == f"{GEN_PREFIX}{made[-1]}"
    assert kept_generation(folder, made[-2]) == folder / f"{GEN_PREFIX}{made[-2]}"
    assert kept_generation(folder, made[0]) is None  # pruned


def test_a_file_the_new_build_lacks_loses_its_stable_link(tmp_path: Path) -> None:
    folder = tmp_path / "x"
    build_generation(folder, fill_with("A", ("a.bin", "gone.bin")))
    build_generation(folder, fill_with("B", ("a.bin",)))
    assert not (folder / "gone.bin").is_symlink()
    assert os.readlink(folder / "a.bin") == f"{DATA_LINK}/a.bin"


def test_what_a_killed_writer_left_is_cleaned(tmp_path: Path) -> None:
    folder = tmp_path / "x"
    generation, _ = build_generation(folder, fill_with("A"))
    (folder / f"{TMP_PREFIX}20990101T000000.000000Z-abcdef").mkdir()
    os.symlink("..nowhere", folder / f"{DATA_LINK}.new")
    clean_leftovers(folder)
    assert sorted(os.listdir(folder)) == sorted(
        ["a.bin", "b.bin", DATA_LINK, f"{GEN_PREFIX}{generation}"]
    )


@pytest.mark.parametrize("name", ["", "../elsewhere", "x/../../etc", ".hidden", "nosuch"])
def test_a_recorded_generation_never_leaves_the_folder(tmp_path: Path, name: str) -> None:
    folder = tmp_path / "x"
    build_generation(folder, fill_with("A"))
    (tmp_path / "..elsewhere").mkdir()
    assert kept_generation(folder, name) is None


def test_writers_queue_on_the_lock(tmp_path: Path) -> None:
    lock_file = tmp_path / "locks" / "x.lock"
    order: list[str] = []
    with writer_lock(lock_file, lambda: order.append("first never waits")):
        second = threading.Thread(target=lambda: _take(lock_file, order))
        second.start()
        time.sleep(0.5)
        order.append("first done")
    second.join(timeout=10)
    assert order == ["second waits", "first done", "second holds"]


def _take(lock_file: Path, order: list[str]) -> None:
    with writer_lock(lock_file, lambda: order.append("second waits")):
        order.append("second holds")

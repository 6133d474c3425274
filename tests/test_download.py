"""`python -m facnn data get`: every step is the real code but the download itself, which a
local fake replaces (the machines that test have no internet)."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from facnn import download as G

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "imagenet20"
TOP = f"split_minidataset-{G.SOURCE_COMMIT}"


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _fake(members: dict[str, bytes]):
    def fetch(url: str, dest: Path) -> Path:
        assert url == G.ARCHIVE_URL
        return _tar(dest, members)
    return fetch


@pytest.fixture(scope="module")
def source_archive() -> dict[str, bytes]:
    """The pinned archive's members for the 20 classes (from the offline copy), plus a class
    we do not use and a member that tries to leave the target folder."""
    if not SHARED.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"CI must have {SHARED}")
        pytest.skip(f"{SHARED} is absent")
    members = {f"{TOP}/{p.relative_to(SHARED).as_posix()}": p.read_bytes()
               for p in sorted(SHARED.glob("*/*/*.jpg"))}
    members[f"{TOP}/train/n99999999/n9999999900000001.jpg"] = b"not one of ours"
    members[f"{TOP}/train/../../escaped.jpg"] = b"outside"
    return members


def test_imagenet20_from_the_archive(tmp_path, source_archive):
    from facnn.imagenet import load_folder
    target = G.get("imagenet20", tmp_path / "data", fetch=_fake(source_archive))
    assert target == tmp_path / "data" / "imagenet20"
    files = sorted(p.relative_to(target).as_posix() for p in target.rglob("*.jpg"))
    assert files == sorted(p.relative_to(SHARED).as_posix() for p in SHARED.glob("*/*/*.jpg"))
    assert not (tmp_path / "escaped.jpg").exists() and not list(tmp_path.rglob("n99999999*"))
    val = load_folder("imagenet20", "test", tmp_path / "data", 84)
    assert len(val) == 2000 and val.num_classes == 20


def test_a_changed_file_names_its_class_and_writes_nothing(tmp_path, source_archive):
    members = dict(source_archive)
    changed = next(k for k in members if "/val/n03127925/" in k)       # a crate
    members[changed] = members[changed] + b"\0"
    with pytest.raises(G.DataError, match=r"1 of 40 class folders differ .*val/n03127925"):
        G.get("imagenet20", tmp_path / "data", fetch=_fake(members))
    assert not (tmp_path / "data" / "imagenet20").exists()


def test_a_failed_download_is_one_clear_error(tmp_path):
    def offline(url, dest):
        raise G.DataError(f"could not download {url} (no network)")
    with pytest.raises(G.DataError, match="could not download"):
        G.get("imagenet20", tmp_path, fetch=offline)
    assert list(tmp_path.iterdir()) == []        # the temporary folder is gone


@pytest.mark.parametrize("name, cls", [("cifar10", "CIFAR10"), ("cifar100", "CIFAR100")])
def test_cifar_is_torchvisions_own_download(tmp_path, monkeypatch, name, cls):
    import torchvision
    calls = []
    monkeypatch.setattr(torchvision.datasets, cls,
                        lambda root, train, download: calls.append((root, train, download)))
    assert G.get(name, tmp_path) == tmp_path
    assert calls == [(str(tmp_path), True, True), (str(tmp_path), False, True)]


def test_cifar_without_network_says_what_to_do(tmp_path, monkeypatch):
    import torchvision

    def offline(root, train, download):
        raise RuntimeError("<urlopen error [Errno -3] Temporary failure in name resolution>")
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(G.DataError, match="unpack.py cifar10"):
        G.get("cifar10", tmp_path)


def test_cli_refuses_an_unknown_dataset_in_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "facnn", "data", "get", "mnist", "--out", str(tmp_path)],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "unknown dataset 'mnist'" in r.stderr and len(r.stderr.strip().splitlines()) == 1

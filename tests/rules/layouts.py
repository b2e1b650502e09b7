"""Rules directories on disk, laid out the ways deployments write them."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def domain_yaml(domain: str, requests_per_unit: int = 1, key: str = "k") -> str:
    """A one-limit rules file."""
    return (
        f"domain: {domain}\ndescriptors:\n  - key: {key}\n"
        f"    rate_limit: {{unit: second, requests_per_unit: {requests_per_unit}}}\n"
    )


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def write_atomically(path: Path, text: str) -> None:
    """Write a temporary file beside ``path`` (not *.yaml) and rename it over ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def swap_symlink(link: Path, target: str) -> None:
    """Point ``link`` at ``target`` atomically: ``ln -s target tmp && mv -T tmp link``."""
    tmp = link.with_name(link.name + "_tmp")
    os.symlink(target, tmp)
    os.replace(tmp, link)


def make_configmap(root: Path, version: str, files: dict[str, str]) -> None:
    """Do what kubelet does for a ConfigMap volume update.

    Files go to a new ``..<timestamp>`` directory, ``..data_tmp -> ..<timestamp>`` is renamed
    over ``..data``, each ``<name> -> ..data/<name>`` link is made if missing (and removed for
    names that are gone), then the previous timestamp directory is deleted.
    """
    root.mkdir(parents=True, exist_ok=True)
    data = root / "..data"
    old = os.readlink(data) if data.is_symlink() else None
    real = root / f"..2026_11_28_{version}"
    for name, text in files.items():
        write(real / name, text)
    swap_symlink(data, real.name)
    for name in files:
        if not (root / name).is_symlink():
            os.symlink(f"..data/{name}", root / name)
    for link in root.iterdir():
        if link.is_symlink() and not link.name.startswith(".") and link.name not in files:
            link.unlink()
    if old is not None:
        shutil.rmtree(root / old)

"""Fetch headless Neovim 0.12 from Debian's `sid` suite into a private folder, touching nothing
of the system's apt setup or libc.

Recipe (DESIGN.md, "Where real assets come from here"): a one-entry sources file for `sid`,
`apt-get update` into a private lists folder, `apt-cache depends --recurse` for `neovim`,
`apt-get download NAME/sid` for each, and `dpkg -x` of every `.deb` into one folder. Neovim then
runs through the unpacked dynamic loader with `--library-path`, so sid's libc is used only by
this process. About 11 MB of packages.

    python tests/e2e/fetch_nvim.py            # prints the wrapper path: <cache>/nvim/bin/nvim
    QUILL_TEST_ASSETS=/somewhere python tests/e2e/fetch_nvim.py

`nvim_path()` is what tests call; it returns None (with the reason) where Neovim cannot be had.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from filelock import FileLock

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCES = "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian sid main\n"
# `apt-cache depends` prints relations we must not follow as packages to fetch.
_NOT_DEPENDENCIES = ["--no-recommends", "--no-suggests", "--no-conflicts", "--no-breaks",
                     "--no-replaces", "--no-enhances"]
_MULTIARCH = "usr/lib/x86_64-linux-gnu"


class FetchError(RuntimeError):
    """Neovim could not be fetched; the message says which step failed and why."""


def cache_dir() -> Path:
    return Path(os.environ.get("QUILL_TEST_ASSETS", REPO_ROOT / ".test-assets")) / "nvim"


def _apt_options(work: Path) -> list[str]:
    # Private sources, lists and package cache, and no locks (the system's apt is not ours to
    # lock). As root, apt would hand downloads to the `_apt` user, who cannot write our folders.
    options = [
        "-o", f"Dir::Etc::SourceList={work / 'sid.list'}",
        "-o", "Dir::Etc::SourceParts=/dev/null",
        "-o", f"Dir::State::Lists={work / 'lists'}",
        "-o", f"Dir::Cache={work / 'cache'}",
        "-o", "Debug::NoLocking=1",
    ]
    if os.geteuid() == 0:
        options += ["-o", "APT::Sandbox::User=root"]
    return options


def _run(cmd: list[str], cwd: Path) -> str:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FetchError(f"{cmd[0]} failed: {exc}") from exc
    if proc.returncode != 0:
        raise FetchError(f"`{' '.join(cmd[:2])} …` failed: {proc.stderr.strip()[-500:]}")
    return proc.stdout


def _dependencies(work: Path) -> list[str]:
    out = _run(["apt-cache", *_apt_options(work), "depends", "--recurse", *_NOT_DEPENDENCIES,
                "neovim"], work)
    # Top-level lines are package names; indented lines are the relations; `<name>` is virtual.
    names = {line.strip() for line in out.splitlines() if line and not line[0].isspace()}
    return sorted(n for n in names if not n.startswith("<"))


def _write_wrapper(root: Path) -> Path:
    wrapper = root / "bin" / "nvim"
    wrapper.parent.mkdir(parents=True, exist_ok=True)
    wrapper.write_text(
        "#!/bin/sh\n"
        "# Runs sid's nvim with sid's own loader and libraries; the system libc is not involved.\n"
        'ROOT="$(cd "$(dirname "$0")/.." && pwd)"\n'
        'export VIMRUNTIME="$ROOT/usr/share/nvim/runtime"\n'
        f'exec "$ROOT/{_MULTIARCH}/ld-linux-x86-64.so.2" --library-path "$ROOT/{_MULTIARCH}" '
        '"$ROOT/usr/bin/nvim" "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper


def fetch(target: Path | None = None) -> Path:
    """Fetch and unpack Neovim once into `target`; return the `bin/nvim` wrapper."""
    target = target or cache_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.with_name(target.name + ".lock"))):  # parallel test workers
        return _fetch_unlocked(target)


def _fetch_unlocked(target: Path) -> Path:
    wrapper = target / "bin" / "nvim"
    if wrapper.exists():
        return wrapper
    for tool in ("apt-get", "apt-cache", "dpkg"):
        if shutil.which(tool) is None:
            raise FetchError(f"`{tool}` is not installed (Neovim is fetched from Debian's archive)")
    if not Path("/usr/share/keyrings/debian-archive-keyring.gpg").exists():
        raise FetchError("Debian's archive keyring is missing (install debian-archive-keyring)")
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    work, root = partial / "apt", partial / "root"
    for sub in ("lists/partial", "cache/archives/partial", "debs"):
        (work / sub).mkdir(parents=True)
    (work / "sid.list").write_text(SOURCES)
    _run(["apt-get", *_apt_options(work), "update"], work)
    names = _dependencies(work)
    _run(["apt-get", *_apt_options(work), "download", *(f"{n}/sid" for n in names)], work / "debs")
    for deb in sorted((work / "debs").glob("*.deb")):
        _run(["dpkg", "-x", str(deb), str(root)], work)
    _write_wrapper(root)
    shutil.rmtree(work)
    shutil.rmtree(target, ignore_errors=True)
    root.rename(target)  # atomic: a half-unpacked folder never looks like a usable Neovim
    partial.rmdir()
    return wrapper


def nvim_version(nvim: Path) -> str:
    out = subprocess.run([str(nvim), "--version"], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise FetchError(f"{nvim} --version failed: {out.stderr.strip()[-300:]}")
    return out.stdout.splitlines()[0]


def nvim_path() -> tuple[Path | None, str]:
    """(wrapper, "") when Neovim 0.12+ runs here, else (None, the reason)."""
    if sys.platform != "linux" or os.uname().machine != "x86_64":
        return None, "headless Neovim is fetched from Debian for linux/x86_64 only"
    try:
        nvim = fetch()
        version = nvim_version(nvim)
    except FetchError as exc:
        return None, f"Neovim 0.12 could not be fetched from Debian sid: {exc}"
    return nvim, version


if __name__ == "__main__":
    try:
        path = fetch(Path(sys.argv[1]) if len(sys.argv) > 1 else None)
    except FetchError as exc:
        sys.exit(f"fetch_nvim: {exc}")
    print(path)
    print(nvim_version(path))

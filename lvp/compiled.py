"""Which modules are compiled to C (mypyc, by ``setup.py``), and whether their builds are current.

The per-event code of the collector is built into C extensions at install time when a C compiler
is here; the Python source is what they are compiled from, and what runs where no extension was
built (``LVP_COMPILE=0 pip install ...``, or no compiler). An editable install (``make setup``)
puts the extensions next to the sources, where Python prefers them: after an edit of one of these
modules, the extension is stale until ``make setup`` builds it again (``tests/conftest.py`` stops
on a stale one). This module imports nothing of the project, so that ``setup.py`` can read it;
``python lvp/compiled.py`` prints the sources (the Makefile's list).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path
from typing import Final

#: compiled by setup.py, in this order (one shared library for all of them)
MODULES: Final[tuple[str, ...]] = (
    "collector.columns",
    "collector.enrich",
    "collector.identity",
    "collector.pipeline",
    "collector.protocol",
    "collector.urlscrub",
    "lvp.cache",
    "lvp.iglu_typed",
    "lvp.pseudonym",
)

ROOT: Final = Path(__file__).resolve().parent.parent


def source_of(module: str, root: Path = ROOT) -> Path:
    """The Python source of ``module`` under ``root``."""
    return root.joinpath(*module.split(".")).with_suffix(".py")


def sources() -> list[str]:
    """The compiled modules' sources, relative to the project root (what mypyc is given)."""
    return [source_of(module, Path()).as_posix() for module in MODULES]


def extension_of(module: str, root: Path = ROOT) -> Path | None:
    """The compiled extension of ``module`` next to its source under ``root``, if there is one."""
    source = source_of(module, root)
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = source.with_suffix(suffix)
        if path.exists():
            return path
    return None


def stale(root: Path = ROOT) -> list[str]:
    """Modules whose extension under ``root`` is older than their source (edited since the build):
    Python would load the old build."""
    out = []
    for module in MODULES:
        ext = extension_of(module, root)
        source = source_of(module, root)
        if ext is not None and source.exists() and ext.stat().st_mtime < source.stat().st_mtime:
            out.append(module)
    return out


def is_compiled(module: str) -> bool:
    """Does ``import module`` load a C extension (rather than the Python source)?"""
    spec = importlib.util.find_spec(module)
    return spec is not None and isinstance(spec.loader, importlib.machinery.ExtensionFileLoader)


def report() -> dict[str, bool]:
    """Each listed module: compiled or not, as Python would import it now."""
    return {module: is_compiled(module) for module in MODULES}


if __name__ == "__main__":
    print(" ".join(sources()))

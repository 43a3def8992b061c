"""Build step: the per-event modules compiled to C extensions with mypyc, when a C compiler is here.

The metadata is in ``pyproject.toml``; this file adds only the compiled modules. The source stays
the Python in the tree (mypyc compiles the same typed code, checked by the same mypy run), so
without a compiler, or with ``LVP_COMPILE=0``, everything runs as plain Python, with the same
results. ``lvp.compiled`` lists the modules and says which are compiled and which are stale.
"""

from __future__ import annotations

import os
import runpy
import shutil
import sys
import sysconfig
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
#: the modules' sources, read without importing the project (its dependencies are not installed yet)
SOURCES: list[str] = runpy.run_path(str(ROOT / "lvp" / "compiled.py"))["sources"]()

#: setup.py commands that build code (metadata queries such as egg_info do not compile)
BUILDING = {"build", "build_ext", "bdist_wheel", "editable_wheel", "develop", "install"}


def _compiler() -> bool:
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(cc) is not None


def ext_modules() -> list:  # type: ignore[type-arg]
    if os.environ.get("LVP_COMPILE", "1") == "0" or not BUILDING & set(sys.argv[1:]):
        return []
    if not _compiler():
        print("lvp: no C compiler found; the modules stay plain Python", file=sys.stderr)
        return []
    from mypyc.build import mypycify

    return mypycify(SOURCES, opt_level="3")


class BuildEveryTime(build_ext):
    """Builds every extension at each install, even when its C source is unchanged (mypyc writes
    the same C for an edit of a comment): a build must be newer than its source, or
    ``lvp.compiled.stale`` reports it."""

    def initialize_options(self) -> None:
        super().initialize_options()
        self.force = True


setup(ext_modules=ext_modules(), cmdclass={"build_ext": BuildEveryTime})

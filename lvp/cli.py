"""The `lvp` console script.

Each service package contributes its subcommands through a ``register(subparsers)`` function in
its ``cli`` module; flags that set a :class:`~lvp.config.Settings` field are added with
:func:`setting_flag` and collected by :func:`settings_from_args`, so flags override the
environment everywhere in the same way.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any, get_type_hints

from lvp import compiled
from lvp.config import SETTINGS, ConfigError, Settings
from lvp.errors import Unavailable
from lvp.logs import LOG_FORMATS, log_format_from_env, setup_logging

COMMAND_MODULES = (
    "lvp.commands",
    "collector.cli",
    "profiles.cli",
    "viewer.cli",
    "lvp.local.stack",
    "lvp.local.simulate",
    "lvp.iglu_cli",
    "lvp.tail",
)

_PREFIX = "setting__"
_SETTING_FIELDS = {f.name: f for f in SETTINGS}
_SETTING_TYPES: dict[str, Any] = get_type_hints(Settings)  # (the annotations are strings)


def setting_flag(parser: argparse.ArgumentParser, flag: str, setting: str, **kwargs: Any) -> None:
    """Add ``flag`` that overrides the setting ``setting`` (type and help from Settings)."""
    f = _SETTING_FIELDS[setting]
    type_ = _SETTING_TYPES[setting]
    if type_ is bool:
        kwargs.setdefault("action", argparse.BooleanOptionalAction)
    else:
        kwargs.setdefault("type", type_ if type_ in (int, float) else str)
    kwargs.setdefault("help", f"{f.metadata['meaning']} [env {f.metadata['env']}, default {f.default!r}]")
    parser.add_argument(flag, dest=_PREFIX + setting, default=None, **kwargs)


def flag_value(args: argparse.Namespace, setting: str) -> Any:
    """What the flag :func:`setting_flag` added for ``setting`` was given; None when not given."""
    return getattr(args, _PREFIX + setting, None)


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides = {k[len(_PREFIX) :]: v for k, v in vars(args).items() if k.startswith(_PREFIX)}
    return Settings.from_env(**overrides)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lvp", description="live-viewer-profiles: Snowplow-compatible live viewer profiles."
    )
    parser.add_argument("--log-level", default="INFO", help="Python log level (default INFO).")
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=None,
        help="text, or json: one object per line (time, level, logger, message, exception) "
        "[env LVP_LOG_FORMAT, default 'text']",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(sub)
    return parser


_CHATTY_LOGGERS = ("httpx", "botocore.credentials", "aiobotocore.credentials")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = getattr(logging, str(args.log_level).upper(), logging.INFO)
    try:
        setup_logging(level, args.log_format or log_format_from_env())
    except ConfigError as exc:
        print(f"lvp: configuration error: {exc}", file=sys.stderr)
        return 2
    old = compiled.stale()
    if old:  # an editable install edited since its build: Python would run the old build
        logging.getLogger("lvp").warning(
            "compiled modules older than their source (run `make setup`): %s", ", ".join(old)
        )
    if level > logging.DEBUG:  # per-request / per-client lines: httpx (lvp simulate sends
        for noisy in _CHATTY_LOGGERS:  # thousands), botocore's "Found credentials in ..."
            logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        result = args.func(args)
    except ConfigError as exc:
        print(f"lvp: configuration error: {exc}", file=sys.stderr)
        return 2
    except Unavailable as exc:
        print(f"lvp: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (`lvp profile list --active | head`): no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nor at the final flush
        return 141  # as a shell reports a process killed by SIGPIPE
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())

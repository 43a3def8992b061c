"""Rewrite README.md's settings table from lvp.config (run after adding a setting)."""

from __future__ import annotations

import re
from pathlib import Path

from lvp.config import settings_table

README = Path(__file__).resolve().parent.parent / "README.md"


def main() -> None:
    text = README.read_text()
    new = re.sub(
        r"(<!-- settings-table:start.*?-->\n).*?(<!-- settings-table:end -->)",
        lambda m: m.group(1) + settings_table() + "\n" + m.group(2),
        text,
        flags=re.S,
    )
    README.write_text(new)


if __name__ == "__main__":
    main()

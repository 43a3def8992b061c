"""Rewrite README.md's generated sections: the settings table (lvp.config) and the state
machine's transition table (profiles.state). Run after changing either; tests/test_readme.py
fails while README is out of date."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def sections() -> dict[str, str]:
    from lvp.config import settings_table
    from profiles.state import transition_table_markdown

    return {"settings-table": settings_table(), "transition-table": transition_table_markdown()}


def render(text: str) -> str:
    for name, body in sections().items():
        text = re.sub(
            rf"(<!-- {name}:start.*?-->\n).*?(<!-- {name}:end -->)",
            lambda m, body=body: m.group(1) + body.rstrip("\n") + "\n" + m.group(2),
            text,
            flags=re.S,
        )
    return text


def main() -> None:
    README.write_text(render(README.read_text()))


if __name__ == "__main__":
    main()

"""Run the README's "gq_jax in 20 lines" code block exactly as written (used by tests and `make demo`)."""

from __future__ import annotations

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
HEADING = "## gq_jax in 20 lines"


def readme_example(readme: pathlib.Path = README) -> str:
    """The first ```python block after the "gq_jax in 20 lines" heading."""
    text = readme.read_text()
    if HEADING not in text:
        raise ValueError(f"{readme}: no heading {HEADING!r}")
    match = re.search(r"```python\n(.*?)```", text[text.index(HEADING) :], re.DOTALL)
    if match is None:
        raise ValueError(f"{readme}: no python block under {HEADING!r}")
    return match.group(1)


if __name__ == "__main__":
    exec(compile(readme_example(), str(README), "exec"), {"__name__": "__readme__"})

"""The browser view of one question and the model's answer (`static/view.html`,
`static/view.js`): served by `strl serve` at `/view`, embedded by `strl eval` in
`samples.html` with every answer of an eval suite run."""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).parent / "static"


def asset(name: str) -> bytes:
    """One file of the view (`view.html`, `view.js`)."""
    return (STATIC / name).read_bytes()

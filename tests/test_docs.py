"""The repository's documentation stands alone: every pointer into docs/method.md names a section
that exists, and nothing cites a document the repository does not ship."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def tracked_text_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    suffixes = {".py", ".md", ".yaml", ".yml", ".smk", ".rst", ".sh", ".toml", ""}
    return [ROOT / n for n in names if Path(n).suffix in suffixes and (ROOT / n).is_file() and "assets" not in n]


def test_method_sections_cited_exist():
    sections = set(re.findall(r"^## §(\d+) ", (ROOT / "docs" / "method.md").read_text(), flags=re.M))
    assert sections == {str(i) for i in range(1, 9)}
    cited = set()
    for path in tracked_text_files():
        for first, last in re.findall(r"docs/method\.md §(\d+)(?:-(\d+))?", path.read_text(errors="replace")):
            cited |= {first, last or first}
    assert cited and cited <= sections, cited - sections


def test_nothing_cites_the_team_notes():
    offenders = [
        str(p.relative_to(ROOT))
        for p in tracked_text_files()
        if p.name != "test_docs.py" and re.search(r"DESIGN(\.md| §| section)", p.read_text(errors="replace"))
    ]
    assert not offenders, offenders

"""The documents the code and docs point to exist in the repository."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Where a bare document name may live: beside the file that names it, the root, docs/, bench/.
SEARCH = (ROOT, ROOT / "docs", ROOT / "bench")
SOURCES = ([ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md")) + sorted((ROOT / "bench").glob("*.md"))
           + sorted((ROOT / "python").rglob("*.py")) + sorted((ROOT / "csrc").rglob("*.[ch]*"))
           + sorted((ROOT / "bench").glob("*.py")))
DOC = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[A-Z][A-Z_]+\.md)\b")


def _exists(name: str, source: Path) -> bool:
    return any((base / name).is_file() for base in (source.parent, *SEARCH))


@pytest.mark.skipif(not (ROOT / "docs").is_dir(), reason="not a source checkout")
def test_every_named_document_exists():
    missing = sorted({f"{src.relative_to(ROOT)}: {name}" for src in SOURCES if src.is_file()
                      for name in DOC.findall(src.read_text(errors="replace")) if not _exists(name, src)})
    assert not missing, "documents named but not in the repository:\n" + "\n".join(missing)


@pytest.mark.skipif(not (ROOT / "docs").is_dir(), reason="not a source checkout")
def test_semantics_points_to_folders_the_repository_has():
    text = (ROOT / "docs" / "SEMANTICS.md").read_text()
    for folder in re.findall(r"`((?:[\w.-]+/)+)`", text):
        assert (ROOT / folder).is_dir() or (ROOT / "docs" / folder).is_dir(), f"SEMANTICS.md names {folder}"

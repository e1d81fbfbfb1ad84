"""Figures quoted in README.md and docs/*.md name the committed result file they come from:
every backticked `benchmarks/results/...` path must exist, so renaming or dropping a result file
breaks this test instead of leaving a figure without its source."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
RESULT_PATH = re.compile(r"benchmarks/results/[^\s`'\"),;]*")


def result_paths(text: str) -> list[str]:
    """The benchmarks/results/... paths inside inline code spans (fenced blocks hold command
    output, not citations); placeholders such as <name>.json are skipped."""
    paths = []
    for span in CODE_SPAN.findall(FENCE.sub("", text)):
        paths += [p.rstrip(".:") for p in RESULT_PATH.findall(span) if not set("<>*{}") & set(p)]
    return paths


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_cited_result_file_exists(doc):
    missing = sorted({p for p in result_paths(doc.read_text()) if not (REPO / p).exists()})
    assert not missing, f"{doc.name} cites result files that are not in the repository: {missing}"


def test_every_benchmark_row_names_its_file():
    section = readme_section("## Benchmarks")
    rows = [line for line in section.splitlines() if line.startswith("| `") and line.endswith("|")]
    assert len(rows) >= 10, "the Benchmarks table moved or shrank: update this test"
    for row in rows:
        paths = result_paths(row)
        assert paths, f"a Benchmarks row quotes figures without naming their file: {row[:80]}"
        assert "python benchmarks/" in row, f"a Benchmarks row does not name the command: {row[:80]}"


def readme_section(heading: str) -> str:
    text = (REPO / "README.md").read_text()
    start = text.index(heading)
    following = text.find("\n## ", start + len(heading))
    return text[start:following if following != -1 else len(text)]


def test_result_paths_reads_code_spans_only():
    text = "see `benchmarks/results/a.json` and benchmarks/results/b.json, `benchmarks/results/<name>.json`\n" \
           "```\nbenchmarks/results/c.json `benchmarks/results/d.json`\n```\n(`benchmarks/results/e/report.md`)."
    assert result_paths(text) == ["benchmarks/results/a.json", "benchmarks/results/e/report.md"]

"""Numbers the docs quote from committed result files agree with those files.

The README quotes the default profile's summary from data/results/ (one block per JSON,
between ``<!-- summary of PATH -->`` and ``<!-- end of summary -->``); the block must be
what :func:`pinn.analysis.report.summary_markdown` makes of that JSON today, so a new JSON
or a change in how verdicts are judged shows up here, not in a reader's hands.
"""

import re
from pathlib import Path

import pytest

from pinn.analysis.report import load_json, summary_markdown, summary_of

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"<!-- summary of (\S+) -->\n(.*?)\n<!-- end of summary -->", re.S)


def _blocks():
    return BLOCK.findall((ROOT / "README.md").read_text())


def test_the_readme_quotes_the_default_profile_on_two_code_paths():
    quoted = {path for path, _ in _blocks()}
    assert {"data/results/bench-smoke-cpu.json",
            "data/results/bench-smoke-cpu-aten-default.json"} <= quoted


@pytest.mark.parametrize("path, text", _blocks(), ids=[path for path, _ in _blocks()])
def test_a_quoted_summary_is_what_its_json_gives(path, text):
    expected = "\n".join(summary_markdown(load_json(ROOT / path)))
    assert text.strip() == expected.strip(), (
        f"README's summary of {path} is stale; the JSON gives:\n{expected}")


def test_the_two_code_paths_decide_alike():
    """The default profile on native and on non-vectorised kernels (README): wherever both
    decide a claim, they decide it the same way."""
    native, other = (summary_of(load_json(ROOT / "data/results" / name)) for name in
                     ("bench-smoke-cpu.json", "bench-smoke-cpu-aten-default.json"))
    decided = ("reproduced", "not reproduced")
    pairs = [(native[case][method]["tail_verdict"], other[case][method]["tail_verdict"])
             for case in native for method in native[case]
             if "tail_verdict" in native[case][method]]
    both = [(a, b) for a, b in pairs if a in decided and b in decided]
    assert len(both) >= 6          # the profile decides >= 3 systems on both methods
    assert all(a == b for a, b in both), pairs

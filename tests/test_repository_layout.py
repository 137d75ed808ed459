"""kernels/ sits at the top of the tree and installs as fastembed_rt.kernels; run from the repository root,
it must not shadow PyPI's `kernels`, which transformers imports. And the files the suite names exist."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NO_TRITON = "import sys; sys.modules['triton'] = None\n"  # an import of triton now fails, as if not installed


def run_from_root(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.parametrize("prelude", ["", NO_TRITON], ids=["with-triton", "without-triton"])
def test_transformers_and_sentence_transformers_import_from_the_root(prelude):
    out = run_from_root(prelude + "from transformers import PreTrainedModel, BertModel\n"
                        "import sentence_transformers, kernels\nprint(kernels.__file__)")
    assert str(ROOT / "kernels") not in out, f"the repository's kernels/ was imported as `kernels`: {out}"


def test_without_pypi_kernels_the_top_level_name_is_an_empty_module():
    # site-packages dropped from the path: no PyPI `kernels` to hand over to (transformers before 5.25 did not need it).
    out = run_from_root(NO_TRITON + "sys.path = [p for p in sys.path if 'site-packages' not in p]\n"
                        "import kernels\nprint(hasattr(kernels, '__version__'), hasattr(kernels, 'attention'))")
    assert out.split() == ["False", "False"]


def test_fastembed_rt_kernels_still_imports_from_the_root():
    out = run_from_root("import fastembed_rt.kernels as k\nprint(k.__name__, callable(k.attention))")
    assert out.split() == ["fastembed_rt.kernels", "True"]


def test_the_slowest_files_the_suite_starts_with_exist():
    """tests/conftest.py names the slowest test files so that they go out first; a renamed or deleted one would
    quietly lose its place."""
    from conftest import SLOWEST_FILES

    assert SLOWEST_FILES and [name for name in SLOWEST_FILES if not (ROOT / name).is_file()] == []

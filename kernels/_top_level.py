"""What kernels/ does when imported as the top-level `kernels` rather than as fastembed_rt.kernels."""

import importlib.machinery
import importlib.util
import sys
from pathlib import Path

_REPOSITORY_ROOT = Path(__file__).resolve().parent.parent


def hand_over_to_installed_kernels() -> None:
    """Replace sys.modules["kernels"] with PyPI's `kernels` when it is installed. Without it, the module
    stays empty and has no __version__, which is how transformers reads an absent `kernels`; nothing here
    imports triton, so this holds whether or not triton is installed."""
    elsewhere = [entry for entry in sys.path if Path(entry or ".").resolve() != _REPOSITORY_ROOT]
    spec = importlib.machinery.PathFinder.find_spec("kernels", elsewhere)
    if spec is None or spec.loader is None:
        return
    installed = importlib.util.module_from_spec(spec)
    # The import statement returns whatever sys.modules holds once this module has run.
    sys.modules["kernels"] = installed
    spec.loader.exec_module(installed)

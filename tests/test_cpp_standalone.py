"""CMakeLists.txt builds the C++ kernels without Python or torch, and their C++ unit tests pass."""

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_cmake_build_and_ctest(tmp_path):
    if shutil.which("cmake") is None:
        pytest.fail("cmake is required to build the standalone C++ kernels")
    build = tmp_path / "build"
    subprocess.run(["cmake", "-S", str(REPO), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release"], check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(build), "-j", "2"], check=True, capture_output=True)
    result = subprocess.run(["ctest", "--test-dir", str(build), "--output-on-failure"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "100% tests passed" in result.stdout

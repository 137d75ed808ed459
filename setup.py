"""Builds fastembed_rt._C from csrc/: the CPU sources always, CUDA sources only where they can run.

CUDA sources (csrc/cuda/*.cu) are compiled into fastembed_rt._C_cuda only when a CUDA toolkit (nvcc)
and a CUDA build of torch are both present; everywhere else the build is CPU-only and still succeeds.
"""

import glob
import os
import shutil

from pybind11.setup_helpers import ParallelCompile, Pybind11Extension, build_ext
from setuptools import setup

CPU_SOURCES = sorted(glob.glob("csrc/cpu/*.cpp")) + ["csrc/bindings.cpp"]
CUDA_SOURCES = sorted(glob.glob("csrc/cuda/*.cu")) + sorted(glob.glob("csrc/cuda/*.cpp"))


def cuda_extensions():
    if not CUDA_SOURCES or shutil.which("nvcc") is None:
        return [], {}
    try:
        import torch
        from torch.utils.cpp_extension import BuildExtension, CUDAExtension
    except ImportError:
        return [], {}
    if torch.version.cuda is None:
        return [], {}
    ext = CUDAExtension("fastembed_rt._C_cuda", CUDA_SOURCES, include_dirs=[os.path.abspath("csrc")])
    return [ext], {"build_ext": BuildExtension}


# Compile the sources in parallel: one job per core, or $FASTEMBED_RT_BUILD_JOBS.
ParallelCompile("FASTEMBED_RT_BUILD_JOBS", default=os.cpu_count() or 1).install()

cpu_ext = Pybind11Extension(
    "fastembed_rt._C",
    CPU_SOURCES,
    include_dirs=["csrc"],
    cxx_std=17,
    extra_compile_args=["-O3", "-fopenmp-simd", "-fno-trapping-math", "-fno-math-errno", "-Wno-psabi"],
)
cuda_exts, cmdclass = cuda_extensions()

setup(ext_modules=[cpu_ext, *cuda_exts], cmdclass=cmdclass or {"build_ext": build_ext})

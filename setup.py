"""Builds the fused search kernel (src/huoyan/vision/_nearest.c); the rest is in pyproject.toml.

The kernel is optional: where it cannot be built (no C compiler, not an x86-64 CPU) the
package installs without it and searches with library matrix products instead.
"""

import platform

from setuptools import Extension, setup

X86_64 = platform.machine().lower() in {"x86_64", "amd64"}

kernel = Extension(
    "huoyan.vision._nearest",
    sources=["src/huoyan/vision/_nearest.c"],
    depends=["src/huoyan/vision/_nearest_body.h"],
    extra_compile_args=["-O3", "-std=gnu11", "-fopenmp"],
    extra_link_args=["-fopenmp"],
    optional=True,
)

setup(ext_modules=[kernel] if X86_64 else [])

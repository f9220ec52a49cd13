"""Build flowlens's compiled hot path.

The modules listed in `flowlens.compiled.MODULES` are plain Python that Cython compiles (its "pure Python
mode": the `cython.*` annotations and the `.pxd` files beside them give C types). Without a
C compiler, or without Cython, the same modules run as ordinary Python: slower, identical
output (tests/test_compiled.py compares the two). `flowlens --version` says which ran.
Set FLOWLENS_PURE_PYTHON=1 to build without compiling.
"""

import os
import runpy

from setuptools import setup
from setuptools.command.build_ext import build_ext


class ParallelBuildExt(build_ext):
    """Compile the extension modules side by side, one per core (the compile is most of the
    install's time)."""

    def finalize_options(self):
        super().finalize_options()
        if not self.parallel:
            self.parallel = os.cpu_count() or 1


MODULES = runpy.run_path(os.path.join("flowlens", "compiled.py"))["MODULES"]
COMPILED = [f"flowlens/{name.replace('.', '/')}.py" for name in MODULES]


def extensions():
    if os.environ.get("FLOWLENS_PURE_PYTHON"):
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        return []
    exts = cythonize(
        COMPILED,
        language_level=3,
        build_dir="build/cython",
        compiler_directives={"binding": True, "embedsignature": True},
        quiet=True,
    )
    for ext in exts:
        ext.optional = True  # a failed compile leaves the pure-Python module in place
    return exts


setup(ext_modules=extensions(), cmdclass={"build_ext": ParallelBuildExt})

"""Build flowlens's compiled hot path: all of it, or none of it.

The modules listed in `flowlens.compiled.MODULES` are plain Python that Cython compiles (its
"pure Python mode": the `cython.*` annotations and the `.pxd` files beside them give C types).
The build is all-or-nothing: compiled modules read each other's C fields through their
`.pxd` files, so a partly compiled install is a different program from both the compiled and
the pure one (it once crashed with only reports' extension missing). Either every listed
module compiles, or the build says so loudly on stderr (`pip install -v` shows it; pip hides
a backend's output otherwise) and installs none of them: the same modules then run as
ordinary Python, slower, with identical output (tests/test_compiled.py compares the two).
`flowlens --version` says which runs. Set FLOWLENS_PURE_PYTHON=1 to build without compiling.
"""

import hashlib
import os
import runpy
import shutil
import sys
import sysconfig
from glob import escape, glob

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
MODULES = runpy.run_path(os.path.join(HERE, "flowlens", "compiled.py"))["MODULES"]
COMPILED = [f"flowlens/{name.replace('.', '/')}.py" for name in MODULES]
#: compiled modules by the hash of everything that goes into them (see `_cache_key`): the
#: README's second command (`pip install -e '.[test]'`) builds again in a fresh build
#: environment and a different build folder, and would otherwise compile everything twice
CACHE = os.path.join(HERE, "build", "flowlens-ext-cache")


def shout(*lines):
    """A warning that stands out in a build log."""
    bar = "=" * 78
    print(f"\n{bar}", *(f"flowlens: {line}" for line in lines), bar, sep="\n", file=sys.stderr)


def remove_in_tree_extensions():
    """Delete compiled copies of the listed modules left in the source tree by an earlier
    build (an editable install imports them): a pure build must leave no module compiled."""
    for path in COMPILED:
        stem = os.path.join(HERE, path[: -len(".py")])
        for so in glob(f"{escape(stem)}.*.so") + glob(f"{escape(stem)}.*.pyd"):
            os.remove(so)


def pure(reason):
    shout(
        f"NOT COMPILING the hot path: {reason}.",
        "Installing every module as plain Python: same output, several times slower.",
        "(`flowlens --version` says which runs; FLOWLENS_PURE_PYTHON=1 does this on purpose.)",
    )
    remove_in_tree_extensions()
    return []


def _cache_key(name):
    """What a compiled module depends on: its source, every .pxd of the package (cimports),
    this file, the Cython and Python that build it, the platform and the compiler flags."""
    import Cython

    h = hashlib.sha256()
    parts = [
        name,
        Cython.__version__,
        sys.version,
        sysconfig.get_platform(),
        sysconfig.get_config_var("EXT_SUFFIX") or "",
        *(os.environ.get(var, "") for var in ("CC", "CFLAGS", "CPPFLAGS", "LDFLAGS")),
    ]
    for part in parts:
        h.update(part.encode() + b"\0")
    module = os.path.join(HERE, "flowlens", *name.split(".")[1:]) + ".py"
    pxds = sorted(
        glob(os.path.join(escape(os.path.join(HERE, "flowlens")), "**", "*.pxd"), recursive=True)
    )
    for path in [module, os.path.abspath(__file__), *pxds]:
        h.update(os.path.relpath(path, HERE).encode() + b"\0")
        with open(path, "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:32]


def _cached(name):
    """The cached build of module `name` (a dotted name), or None."""
    path = os.path.join(CACHE, f"{name}-{_cache_key(name)}.so")
    return path if os.path.exists(path) else None


class ParallelBuildExt(build_ext):
    """Compile the extension modules side by side, one per core (the compile is most of the
    install's time); if any fails, install none of them."""

    def finalize_options(self):
        super().finalize_options()
        if not self.parallel:
            self.parallel = os.cpu_count() or 1
        # the cache (build_extension) decides what is reused, by content; a module it does not
        # hold is compiled whatever the file times say: distutils' up-to-date check compares
        # the target with the C it was translated to, and an earlier build's copy in the tree
        # (its times kept to the second) could pass for the new one and be cached under the new
        # sources' key (tests/test_build.py, the second-build test, failed now and then)
        self.force = True

    def build_extensions(self):
        self._failed = []
        super().build_extensions()  # (build_extension below records failures, never raises)
        if self._failed:
            for ext in self.extensions:  # the ones that did compile: not installed either
                built = self.get_ext_fullpath(ext.name)
                if os.path.exists(built):
                    os.remove(built)
            names = ", ".join(name for name, _ in self._failed)
            shout(
                f"COMPILING FAILED for {len(self._failed)} of {len(self.extensions)} modules: {names}",
                *(f"  {name}: {err}" for name, err in self._failed),
                "Installing NONE of them compiled (all-or-nothing): every module runs as",
                "plain Python, same output, several times slower. Fix the error above and",
                "reinstall to get the compiled hot path.",
            )
            self.extensions = []  # nothing to copy into the tree or to list as outputs
            remove_in_tree_extensions()

    def build_extension(self, ext):
        target = self.get_ext_fullpath(ext.name)
        cached = _cached(ext.name)
        if cached:  # the same sources, Cython, Python and flags built it before
            os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
            shutil.copyfile(cached, target)
            return
        try:
            super().build_extension(ext)
        except Exception as err:  # a C compiler error, a missing compiler, a link error ...
            self._failed.append((ext.name, f"{type(err).__name__}: {err}"))
            return
        try:  # keep it for the next build of the same sources
            os.makedirs(CACHE, exist_ok=True)
            tmp = os.path.join(CACHE, f".{ext.name}-{os.getpid()}.tmp")
            shutil.copyfile(target, tmp)
            os.replace(tmp, os.path.join(CACHE, f"{ext.name}-{_cache_key(ext.name)}.so"))
        except OSError:
            pass  # a read-only tree: no cache, nothing else changes


def extensions():
    if os.environ.get("FLOWLENS_PURE_PYTHON"):
        return pure("FLOWLENS_PURE_PYTHON is set")
    try:
        from Cython.Build import cythonize
    except ImportError:
        return pure("Cython is not installed")
    from setuptools import Extension

    names = [f"flowlens.{name}" for name in MODULES]
    if all(_cached(name) for name in names):
        # every module was built from these very sources before: no Cython translation, and
        # build_extension copies each cached build (the sources are never compiled)
        return [Extension(name, [path]) for name, path in zip(names, COMPILED)]
    try:
        return cythonize(
            COMPILED,
            language_level=3,
            build_dir="build/cython",
            compiler_directives={"binding": True, "embedsignature": True},
            quiet=True,
        )
    except Exception as err:  # a Cython error in any module: compile none of them
        return pure(f"Cython could not translate the modules ({type(err).__name__}: {err})")


setup(ext_modules=extensions(), cmdclass={"build_ext": ParallelBuildExt})

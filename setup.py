"""Build hook for the optional C backend; everything else is in pyproject.toml.

``pip install .`` and ``pip install -e .`` compile ``fastact._backends._cfastact``
from ``c_src/`` through the cffi builder in ``build.py``.  If that fails (no C
compiler, no OpenMP, a compile error) the installation still succeeds: the
reason is written to ``fastact/_backends/_cfastact.unbuilt`` and the ``"c"``
backend reports "not built: <reason>".  ``FASTACT_C_NO_OPENMP=1`` builds
without threads; without OpenMP support the build retries without it anyway.
"""
import importlib.util
import pathlib
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = pathlib.Path(__file__).resolve().parent


_BUILDER = []


def _builder():
    # loaded by path: `import build` could find PyPA's `build` package
    if _BUILDER:
        return _BUILDER[0]
    spec = importlib.util.spec_from_file_location("_fastact_build", HERE / "build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    _BUILDER.append(mod)
    return mod


class optional_build_ext(build_ext):
    """Builds the C backend if it can; never fails the installation."""

    def run(self):
        try:
            super().run()
        except Exception as e:            # e.g. no compiler found at all
            self._give_up(e)

    def build_extension(self, ext):
        try:
            # the sources of one extension side by side (the C backend's
            # instruction-set units take most of the build)
            _builder().compile_in_parallel(self.compiler)
        except Exception:                 # then one after another
            pass
        if ext.name.endswith("._cfastcall"):
            # optional: without it the C backend calls through cffi
            try:
                super().build_extension(ext)
            except Exception as e:
                self.warn(f"fastact: the C backend's fast call path was not built ({e})")
            return
        err = self._try_build(ext)
        if err is not None and "-pthread" in ext.extra_compile_args:
            self.warn(f"fastact: C backend failed to build with threads ({err}); "
                      "retrying without them")
            ext.extra_compile_args = [a for a in ext.extra_compile_args
                                      if a != "-pthread"] + ["-DFA_NO_THREADS"]
            ext.extra_link_args = [a for a in ext.extra_link_args if a != "-pthread"]
            err = self._try_build(ext)
        if err is not None:
            self._give_up(err)

    def _try_build(self, ext):
        """None when the extension built, else the error."""
        try:
            super().build_extension(ext)
        except Exception as e:
            return e
        self._note().unlink(missing_ok=True)
        return None

    def _note(self):
        base = HERE if self.inplace else pathlib.Path(self.build_lib)
        return base / "fastact" / "_backends" / "_cfastact.unbuilt"

    def _give_up(self, err):
        reason = f"{type(err).__name__}: {err}".strip().replace("\n", " ")
        self.warn(f"fastact: the C backend was not built ({reason}); "
                  "the other backends work without it")
        note = self._note()
        note.parent.mkdir(parents=True, exist_ok=True)
        note.write_text(reason + "\n")


def _extensions():
    try:
        b = _builder()
        exts = [b.extension(threads=b.want_threads())]
    except Exception as e:                # cffi missing or the header unreadable
        print(f"fastact: the C backend will not be built: {e}", file=sys.stderr)
        return []
    try:
        exts.append(b.fastcall_extension())
    except Exception as e:                # NumPy's headers missing
        print(f"fastact: the C backend's fast call path will not be built: {e}",
              file=sys.stderr)
    return exts


setup(ext_modules=_extensions(), cmdclass={"build_ext": optional_build_ext})

"""Install-time build of the C kernels: every instruction-set variant is compiled into the package
(``pretrained/backends/_lib/``) by ``pretrained/backends/build.py``, so no model call waits for
the compiler and nothing is built into a folder another user can write. Without a compiler the
install still succeeds: the kernels are then built at first use, or PyTorch's kernels run.
Everything else about the package is in pyproject.toml."""

import importlib.util
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = Path(__file__).resolve().parent


class BuildPyWithKernels(build_py):
    def run(self) -> None:
        super().run()
        spec = importlib.util.spec_from_file_location("kernel_build", HERE / "pretrained/backends/build.py")
        kernels = importlib.util.module_from_spec(spec)   # stdlib only: no torch needed here
        spec.loader.exec_module(kernels)
        root = HERE if getattr(self, "editable_mode", False) else Path(self.build_lib)
        built = kernels.build_all(root / "pretrained" / "backends" / "_lib")
        print(f"pretrained: C kernel variants built: {', '.join(built) or 'none (no compiler)'}")


class WithNativeCode(Distribution):
    """A wheel holding the built kernels is for this platform (not ``py3-none-any``)."""

    def has_ext_modules(self) -> bool:
        return True


setup(cmdclass={"build_py": BuildPyWithKernels}, distclass=WithNativeCode)

"""Ship the checkout's configs/ in the wheel as the package data ``predcode/configs/``.

Everything else about the package is in pyproject.toml. The configs live at the top of the checkout
(where `predcode fit --config configs/mnist/gncn_pdh.toml` finds them); this build step copies them
into the built package, so that an installed predcode finds them by name
(`predcode fit --config mnist/gncn_pdh`). Editable installs read them from the checkout instead.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
CONFIG_SUFFIXES = (".toml", ".cfg")


class BuildPyWithConfigs(build_py):
    """build_py, then copy configs/**/*.toml and *.cfg into <build_lib>/predcode/configs/."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        source = HERE / "configs"
        for path in sorted(source.rglob("*")):
            if path.is_file() and path.suffix in CONFIG_SUFFIXES:
                target = Path(self.build_lib) / "predcode" / "configs" / path.relative_to(source)
                self.mkpath(str(target.parent))
                self.copy_file(str(path), str(target))


setup(cmdclass={"build_py": BuildPyWithConfigs})

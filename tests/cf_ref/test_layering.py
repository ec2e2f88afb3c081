"""The shared layer depends on neither track: importing every ``cf_ref`` module loads no ``toy`` / ``full`` module."""

import subprocess
import sys

CODE = """
import importlib, pkgutil, sys
import cf_ref
names = [m.name for m in pkgutil.walk_packages(cf_ref.__path__, "cf_ref.")]
for name in names:
    importlib.import_module(name)
tracks = sorted(m for m in sys.modules if m.split(".")[0] in ("toy", "full"))
print(len(names), tracks)
"""


def test_cf_ref_imports_no_track():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True).stdout.split(" ", 1)
    assert int(out[0]) >= 15  # every module was imported (schedule, solvers, distill.*, cli, …)
    assert out[1].strip() == "[]"

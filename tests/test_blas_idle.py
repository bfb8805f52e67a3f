"""``fastnn.backends._blas``: SciPy's OpenBLAS is loaded with sleeping idle workers, and the
process environment is left as it was. Each case runs in a fresh interpreter (the library
reads the setting once, when it loads)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

CHILD = """
import json, os, sys
{before}
import fastnn
from fastnn.backends._blas import VARIABLE, scipy_blas_idle
print(json.dumps({{"idle": scipy_blas_idle(), "env": os.environ.get(VARIABLE),
                  "loaded": "scipy.linalg.cython_blas" in sys.modules}}))
"""


def run_child(before: str = "", env: dict | None = None) -> dict:
    full_env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    full_env.update(env or {})
    out = subprocess.run([sys.executable, "-c", CHILD.format(before=before)], env=full_env,
                         capture_output=True, text=True, check=True, timeout=120)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_fastnn_loads_scipy_blas_with_parked_workers_and_restores_the_environment():
    result = run_child()
    assert result["loaded"]
    assert result["idle"].startswith("workers park at once")
    assert result["env"] is None  # set only while the library loaded


def test_a_users_setting_is_kept():
    result = run_child(env={"OPENBLAS_THREAD_TIMEOUT": "12"})
    assert result["env"] == "12" and "the user's" in result["idle"]


@pytest.mark.parametrize("before", ["import scipy.special", "import scipy.linalg.cython_blas"])
def test_a_blas_loaded_before_fastnn_is_reported_not_changed(before):
    result = run_child(before)
    assert result["idle"].startswith("as loaded before fastnn")

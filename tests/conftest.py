import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "golden"
FIXTURE = DATA / "king_fixture"


@pytest.fixture(scope="session")
def plink2():
    """Path to plink2; CI sets SEQ2KING_REQUIRE_PLINK2=1 so a missing plink2 fails."""
    exe = shutil.which("plink2")
    if exe is None:
        if os.environ.get("SEQ2KING_REQUIRE_PLINK2") == "1":
            pytest.fail("plink2 is required here (SEQ2KING_REQUIRE_PLINK2=1) but not on PATH")
        pytest.skip("plink2 not installed; the committed golden files still cover the comparison")
    return exe


def run_plink2(exe, *args):
    subprocess.run([exe, "--silent", "--threads", "2", *map(str, args)], check=True)


def run_cli(*args, cwd=None):
    """Run the seq2king command in a subprocess, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "seq2king.cli", *map(str, args)],
        capture_output=True, text=True, cwd=cwd,
    )

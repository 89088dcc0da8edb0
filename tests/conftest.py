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


def read_wandb_records(path):
    """Records of an offline W&B run file (``run-*.wandb``).

    The file is a 7-byte W&B header and then LevelDB log format: 32 KiB blocks of
    chunks (crc32c 4 bytes, length 2 bytes LE, type 1 byte: full/first/middle/last)
    whose payloads are ``wandb_internal_pb2.Record`` messages.
    """
    from wandb.proto import wandb_internal_pb2 as pb

    data = open(path, "rb").read()
    assert data[:4] == b":W&B", "not a W&B run file"
    block, pos, buf, out = 32768, 7, b"", []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        length = int.from_bytes(data[pos + 4:pos + 6], "little")
        kind = data[pos + 6]
        payload = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            continue
        buf = payload if kind in (1, 2) else buf + payload
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(buf)
            out.append(rec)
    return out

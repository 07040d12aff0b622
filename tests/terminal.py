"""Commands run with a real pseudo-terminal, for output shown only on a terminal."""

from __future__ import annotations

import os
import pty
import subprocess
from pathlib import Path


def run_in_terminal(args: list[str], cwd: Path) -> str:
    """Run a command with a terminal for stdout and stderr; everything it wrote."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(args, cwd=cwd, stdout=follower, stderr=follower)
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the other end closed
            break
        if not chunk:
            break
        output += chunk
    os.close(leader)
    assert process.wait(120) == 0, output
    return output.decode()

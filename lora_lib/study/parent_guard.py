"""``python -m lora_lib.study.parent_guard PID PROGRAM ARGS...``: run a program that dies with its parent.

The sweep starts each run's papermill through this guard. On Linux it asks the kernel to send
it SIGTERM when the process that started it dies (``PR_SET_PDEATHSIG``), then becomes the
program (``exec``, which keeps that request). So a sweep that is killed, even with SIGKILL,
takes its runs with it, and a restarted sweep never races an orphaned run. The request is made
here, in the new process, rather than in a ``preexec_fn`` between fork and exec, which Python
documents as unsafe in a process with threads (the sweep runs its runs from a thread pool).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> None:
    parent, program = int(argv[0]), argv[1:]
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the request was made: nobody waits for this run
            sys.exit(f"parent_guard: the process that started this one ({parent}) is gone; not starting")
    os.execvp(program[0], program)


if __name__ == "__main__":
    main(sys.argv[1:])

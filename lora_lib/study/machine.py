"""What a run was measured on, and how much memory it used."""

from __future__ import annotations

import functools
import os
import platform
import resource
import subprocess
import sys
from pathlib import Path

import torch


@functools.cache
def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_model() -> str:
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for, but torch sees no CUDA device; use device='cpu' or 'auto'")
    return device


def bf16_supported(device: str) -> bool:
    """Whether bf16 autocast is fast here: a GPU that supports it, or a CPU with AVX-512 BF16 or AMX."""
    if device == "cuda":
        return torch.cuda.is_bf16_supported()
    flags = _cpuinfo()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def reset_peak_rss() -> bool:
    """Start a new peak-memory window for this process (Linux); False where it can't."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """The peak resident memory of this process, in MiB: since ``reset_peak_rss`` on Linux,
    else since the process started."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / (1024 if sys.platform == "darwin" else 1)  # bytes on macOS, KiB on Linux


def environment() -> dict:
    """What the numbers were measured on."""
    import transformers

    from lora_lib import __version__

    return {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "lora_lib": __version__,
        "git_commit": _git_commit(),
    }


def _git_commit() -> str | None:
    """The commit of the lora_lib checkout, with ``+dirty`` for uncommitted changes."""
    here = Path(__file__).resolve().parent
    try:
        run = functools.partial(subprocess.run, cwd=here, capture_output=True, text=True, check=True)
        commit = run(["git", "rev-parse", "HEAD"]).stdout.strip()
        dirty = run(["git", "status", "--porcelain", "--untracked-files=no"]).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+dirty" if dirty else "")

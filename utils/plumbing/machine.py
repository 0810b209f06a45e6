"""The machine something ran on: recorded as a dict (a training segment, a test, a benchmark) and said in words
(reports). Timings mean something only next to the CPU and its vector ISA, and the rotated robustness copies differ
by CPU, so every record carries this. No torch: the caller passes its device and thread count."""
import os
import platform
from pathlib import Path


def this_machine(device="cpu", threads=None):
    """CPU model and vector ISA (timings differ by both), CPU count, torch threads, device."""
    cpu = platform.processor() or platform.machine()
    isa = None
    try:
        info = Path("/proc/cpuinfo").read_text()
        names = [line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")]
        cpu = names[0] if names else cpu
        flags = next((line for line in info.splitlines() if line.startswith("flags")), "")
        isa = "avx512" if " avx512f" in flags else "avx2" if " avx2" in flags else None
    except OSError:
        pass
    return {"cpu": cpu, "cpu_isa": isa, "cpus": os.cpu_count(), "torch_threads": threads, "device": str(device)}


def in_words(host):
    """A recorded machine in words, as reports show it."""
    if host["device"] != "cpu":
        return host["device"]
    isa = f", {host['cpu_isa']}" if host.get("cpu_isa") else ""
    return f"{host['cpu']} ({host['cpus']} CPUs{isa}, {host['torch_threads']} torch threads)"

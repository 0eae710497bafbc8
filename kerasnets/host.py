"""Identity of the machine a measurement ran on (recorded beside every timing)."""
import importlib.metadata
import os
import platform


def cpu_name():
    """The CPU model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``), or 'unknown'."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def litert_version():
    """The installed LiteRT (``ai-edge-litert``) version, read from the package metadata without importing it,
    or 'unknown'."""
    try:
        return importlib.metadata.version("ai-edge-litert")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def machine():
    """``{"machine", "processor", "cores", "litert"}`` of this host."""
    return {"machine": platform.machine(), "processor": cpu_name(), "cores": os.cpu_count(),
            "litert": litert_version()}

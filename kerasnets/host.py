"""Identity of the machine a measurement ran on (recorded beside every timing)."""
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


def machine():
    """``{"machine", "processor", "cores"}`` of this host."""
    return {"machine": platform.machine(), "processor": cpu_name(), "cores": os.cpu_count()}

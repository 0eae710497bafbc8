"""Fit the Edge TPU and M55H profiles to their published calibration points, and rewrite the files.

    .venv/bin/python benchmarks/fit_npu_profiles.py [--write]

Edge TPU, each board on its own column of Coral's benchmark table (coral.ai/docs/edgetpu/benchmarks):
USB Accelerator (edgetpu_usb) / Dev Board (edgetpu_devboard): MobileNet v2 224x224 2.6 / 2.6 ms,
EfficientNet-EdgeTPU-S 224x224 5.1 / 5.5 ms (parameters cached on chip), ResNet-50 V1 299x299
49 / 56 ms, ResNet-50 V2 299x299 50 / 59 ms, ResNet-152 V2 299x299 128 / 151 ms (parameters
beyond the ~8 MiB cache streamed on every invoke). Free: the dense conv efficiency (conv, 1x1
and the group-conv curve tied to it), the depthwise efficiency and the rate at which uncached
parameters stream (USB 3 from the host; the Dev Board's PCIe path).

M55H (m55h, vnpu111): MobileNetV2 576x320 = 124 fps, 288x160 = 373.7 fps, AXSpine-Middle
576x320 = 186 fps (Axera's article, input NCHW 1x3xHxW). Free: the dense conv efficiency (conv,
1x1, and the group-conv curve, whose shape stays as the file states it), the depthwise
efficiency and the per-op overhead. No per-model factor exists anywhere in the model.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kerasnets.export import calibrate  # noqa: E402
from kerasnets.export.profiles import load_profile  # noqa: E402
from kerasnets.io import atomic_write  # noqa: E402

DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "export", "profiles")


def _group_paths(profile, ref):
    table = load_profile(profile).compute.efficiency.group_conv_by_channels_per_group
    return {f"compute.efficiency.group_conv_by_channels_per_group.{k}": v / ref for k, v in table.items() if k != "1"}


# Coral's benchmark table: (model, input, USB Accelerator ms, Dev Board ms).
CORAL_POINTS = (("mobilenet_v2_100", (224, 224), 2.6, 2.6), ("efficientnet_edgetpu_s", (224, 224), 5.1, 5.5),
                ("resnet50", (299, 299), 49.0, 56.0), ("resnet50_v2", (299, 299), 50.0, 59.0),
                ("resnet152_v2", (299, 299), 128.0, 151.0))


def _fitted_only(fitted, section, original):
    """The keys of ``fitted[section]`` a fit moved (with their parents), for a profile that inherits."""
    keys = {path.split(".")[1] for fields in fitted["fitted_fields"].values() for path in fields
            if path.startswith(section + ".")}
    return {k: fitted[section][k] for k in keys}


def _coral_points(column):
    return [(name, size, ms[column]) for name, size, *ms in CORAL_POINTS]


def main():
    write = "--write" in sys.argv
    edgetpu_free = {
        "conv": {"paths": {"compute.efficiency.conv": 1.0, "compute.efficiency.conv1x1": 1.0},
                 "low": 0.01, "high": 1.0},
        "depthwise": {"paths": {"compute.efficiency.depthwise": 1.0,
                                "compute.efficiency.group_conv_by_channels_per_group.1": 1.0},
                      "low": 0.001, "high": 1.0},
        "stream": {"paths": {"memory.host_link_bandwidth_bytes_per_s": 1.0}, "low": 1e7, "high": 1e10}}
    jobs = {
        "edgetpu_usb": (_coral_points(0), edgetpu_free),
        "edgetpu_devboard": (_coral_points(1), edgetpu_free),
        "m55h": ([("mobilenet_v2_100", (576, 320), 1000 / 124), ("mobilenet_v2_100", (288, 160), 1000 / 373.7),
                  ("axspine_middle", (576, 320), 1000 / 186)], {
            "conv": {"paths": {"compute.efficiency.conv": 1.0, "compute.efficiency.conv1x1": 1.0,
                               **_group_paths("m55h", load_profile("m55h").compute.efficiency.conv)},
                     "low": 0.01, "high": 1.0},
            "depthwise": {"paths": {"compute.efficiency.depthwise": 1.0,
                                    "compute.efficiency.group_conv_by_channels_per_group.1": 1.0},
                          "low": 0.001, "high": 1.0},
            "op_overhead": {"paths": {"compute.op_overhead_s": 1.0}, "low": 0.0, "high": 1e-3}}),
    }
    for name, (points, free) in jobs.items():
        original = json.load(open(os.path.join(DIR, f"{name}.json")))
        fitted, report = calibrate.fit_profile_to_points(name, points, free)
        print(name)
        for r in report:
            print(f"  {r['model']:24s} {r['input'][0]}x{r['input'][1]}  published {r['measured_ms']:.3f} ms  "
                  f"fitted {r['predicted_ms']:.3f} ms  ({r['error_pct']:+.2f}%)")
        print("  fitted fields:", json.dumps(fitted["fitted_fields"]))
        if write:
            out = dict(original)
            if original.get("inherits"):  # a child keeps only the fields it overrides, now the fitted ones
                for section in ("compute", "memory"):
                    out[section] = {**original.get(section, {}), **_fitted_only(fitted, section, original)}
            else:
                out["compute"], out["memory"] = fitted["compute"], fitted["memory"]
            out["fitted_to"] = fitted["fitted_to"]
            out["fitted_fields"] = fitted["fitted_fields"]
            atomic_write(os.path.join(DIR, f"{name}.json"), json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

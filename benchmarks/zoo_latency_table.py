"""Predicted latency of every zoo model on every profile (markdown table for README).

    .venv/bin/python benchmarks/zoo_latency_table.py [--profiles=edgetpu_usb,edgetpu_devboard,m55h,gyrfalcon,host_cpu]

Each model at its default input size, 1000 classes, int8 on NPU profiles (max_npu placement:
what does not map runs on the host CPU in float32), float32 on host_cpu. ``(n cpu)`` = layers
placed on the CPU by the segment rule.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("profiles", ["edgetpu_usb", "edgetpu_devboard", "m55h", "gyrfalcon", "host_cpu"], "Profiles.")


def main(argv):
    import kerasnets
    from kerasnets.export import cost, profiles
    loaded = {p: profiles.load_profile(p) for p in FLAGS.profiles}  # a bad one is refused before the table
    print("| model | input | GMACs | " + " | ".join(f"{p} ms" for p in FLAGS.profiles) + " |")
    print("|---|---|---|" + "---|" * len(FLAGS.profiles))
    for name in kerasnets.list_models():
        h, w, _ = kerasnets.get_model_info(name)["default_input_shape"]
        graph = cost.analyze(kerasnets.get_model(name))
        cells = []
        for p in FLAGS.profiles:
            r = cost.estimate(graph, loaded[p])
            t = r["totals"]
            cpu = sum(1 for x in r["layers"] if x.placement == "cpu" and x.latency_ms > 0)
            note = f" ({cpu} cpu)" if cpu and p != "host_cpu" else ""
            cells.append(f"{t['latency_ms']:.2f}{note}")
        print(f"| {name} | {h}x{w} | {graph.total_macs() / 1e9:.3f} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    from kerasnets.cli import run_main  # one-sentence errors, exit 2
    run_main(main)

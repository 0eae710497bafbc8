"""`kerasnets-zoo`: build every registry model at its default size and print params and MACs.

Counts come from the built Keras models (``count_params`` and conv+dense MACs), beside the
reference implementations' figures where published; ``--json`` prints the rows instead.
"""
import difflib
import json
import time

from absl import flags

import kerasnets
from kerasnets.cli import define_flags, run_main
from kerasnets.errors import UsageError

FLAGS = flags.FLAGS
define_flags("json")
flags.DEFINE_list("models", [], "Registry names to include (default: all).")


def zoo_rows(names=None):
    """One dict per model: name, input size, params, MACs, reference figures and whether they match."""
    rows = []
    for name in names or kerasnets.list_models():
        info = kerasnets.get_model_info(name)
        start = time.perf_counter()
        model = kerasnets.get_model(name)
        h, w, _ = info["default_input_shape"]
        row = {"model": name, "input": f"{h}x{w}", "params": model.count_params(),
               "macs": kerasnets.count_macs(model), "build_s": round(time.perf_counter() - start, 2)}
        ref = info["reference"]
        if ref:
            row["ref_params"] = ref["keras_count_params_equiv"]
            row["ref_macs"] = ref["macs_conv_linear_default"]
            row["matches_reference"] = (row["params"], row["macs"]) == (row["ref_params"], row["ref_macs"])
        row["imports_from"] = [f"{source} ({convention})" for source, convention in info["checkpoints"]]
        rows.append(row)
    return rows


def format_table(rows):
    """Markdown table of :func:`zoo_rows`."""
    lines = ["| model | input | params | MMACs | reference params | reference MMACs | match | imports from |",
             "|---|---|---:|---:|---:|---:|---|---|"]
    for r in rows:
        ref_p = f"{r['ref_params']:,}" if "ref_params" in r else "-"
        ref_m = f"{r['ref_macs'] / 1e6:,.1f}" if "ref_macs" in r else "-"
        match = {True: "exact", False: "MISMATCH"}.get(r.get("matches_reference"), "no reference")
        sources = "; ".join(r["imports_from"]) or "-"
        lines.append(f"| {r['model']} | {r['input']} | {r['params']:,} | {r['macs'] / 1e6:,.1f} | {ref_p} | {ref_m} "
                     f"| {match} | {sources} |")
    return "\n".join(lines)


def check_names(names):
    """Refuse (UsageError) an empty, unknown or repeated --models entry before building any model."""
    known = kerasnets.list_models()
    seen = set()
    for name in names:
        if not name.strip():
            raise UsageError(f"--models={','.join(names)!r} has an empty entry; list registry names separated by "
                             "commas, e.g. --models=mobilenet_v2_100,ghostnet_100.")
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}?" if close else "run kerasnets-zoo without --models to list them."
            raise UsageError(f"--models entry {name!r} is not a zoo model; {hint}")
        if name in seen:
            raise UsageError(f"--models lists {name!r} twice; list each model once.")
        seen.add(name)
    return names


def main(argv):
    del argv
    rows = zoo_rows(check_names(FLAGS.models))
    if FLAGS.json:
        print(json.dumps({"models": rows}, indent=1))
    else:
        print(format_table(rows))
        print("\nparams = Keras count_params (BN moving statistics included); MACs = conv + dense "
              "multiply-accumulates at the input size shown; reference = timm 1.0.31 / torchvision / "
              "Megvii ShuffleNetV1 structure.")
    return 1 if any(r.get("matches_reference") is False for r in rows) else 0


def run():
    run_main(main)


if __name__ == "__main__":
    run()

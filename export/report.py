"""The end-to-end job's report: ``summary.json``, ``report.md`` and its PNG plots (matplotlib, Agg).

Everything here renders figures that were measured or estimated elsewhere; nothing is
computed that a reader could not find in ``summary.json``.
"""
import io
import json
import os

from kerasnets.io import atomic_write


def _pyplot():
    # lazy: matplotlib (about 1 s to import) is only needed when a chart is drawn
    import matplotlib
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    atomic_write(path, buf.getvalue())


def accuracy_latency_points(summary):
    """(label, latency_ms, top-1, measured?) for every artifact on the host and every profile estimate.

    An estimate on an NPU profile carries the accuracy of the int8 artifact (what would run
    there); the host CPU estimates carry the accuracy of the artifact of their precision.
    """
    acc = summary["accuracy"]
    points = [(f"host {k} (measured)", summary["host_latency_ms"][k], acc[k], True)
              for k in ("float32", "int8", "partitioned")]
    for key, e in sorted(summary["estimate"].items()):
        points.append((f"{key} (estimated)", e["latency_ms"], acc["float32" if e["precision"] == "float32" else "int8"],
                       False))
    part = summary["partition"]
    points.append((f"{part['profile']} {part['policy']} (estimated)", part["estimate"]["latency_ms"],
                   acc["partitioned"], False))
    return points


def plot_accuracy_latency(summary, path):
    """Top-1 against latency (log scale): measured host points as circles, estimates as squares."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    colours = plt.get_cmap("tab10")
    for i, (label, ms, top1, measured) in enumerate(accuracy_latency_points(summary)):
        ax.scatter([ms], [100 * top1], marker="o" if measured else "s", s=50, color=colours(i % 10),
                   alpha=0.85, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("latency per image, ms (log)")
    ax.set_ylabel("top-1 on the test split, %")
    ax.set_title(f"{summary['model']} {summary['input_size'][0]}x{summary['input_size'][1]}: accuracy vs latency",
                 fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    _save(fig, path)


def plot_layer_cost(summary, path):
    """The most expensive layers on the partition profile, coloured by placement."""
    plt = _pyplot()
    profile = summary["partition"]["profile"]
    rows = next((e["top_layers"] for e in summary["estimate"].values() if "top_layers" in e), [])
    fig, ax = plt.subplots(figsize=(7.5, 0.35 * max(len(rows), 3) + 1))
    colours = {"npu": "C2", "cpu": "C3", "link": "C7"}
    names = [f"{r['name']} ({r['kind']})" for r in rows][::-1]
    ax.barh(names, [r["latency_ms"] for r in rows][::-1],
            color=[colours.get(r["placement"], "C0") for r in rows][::-1])
    ax.set_xlabel(f"estimated ms on {profile} (green NPU, red CPU, grey transfer)")
    ax.set_title(f"{summary['model']}: most expensive layers on {profile}", fontsize=9)
    ax.tick_params(axis="y", labelsize=7)
    _save(fig, path)


def plot_estimate(result, path):
    """Every layer's estimated cost in graph order (an :func:`kerasnets.export.cost.estimate` result), by placement."""
    plt = _pyplot()
    rows = [r for r in result["layers"] if r.latency_ms > 0]
    colours = {"npu": "tab:blue", "cpu": "tab:orange", "link": "tab:gray"}
    fig, ax = plt.subplots(figsize=(max(8, len(rows) * 0.12), 4))
    ax.bar(range(len(rows)), [r.latency_ms for r in rows], color=[colours.get(r.placement, "k") for r in rows])
    ax.set_ylabel("estimated ms")
    ax.set_xlabel("layers in graph order")
    ax.set_title(f"{result['model']} on {result['profile']}: {result['totals']['latency_ms']:.2f} ms "
                 "(blue NPU, orange CPU, grey transfer)", fontsize=9)
    ax.set_xticks([])
    _save(fig, path)


def _pct(x):
    return f"{100 * x:.2f}"


def _forms_lines(forms):
    """The "Group-conv forms" section: which form training, quantization and export used, and why."""
    if not forms:
        return []  # runs made before the forms were recorded
    if not forms.get("grouped_convs"):
        return ["Group-conv form: the model has no grouped convolution, so the form does not matter.", ""]
    lines = ["## Group-conv forms", "",
             f"{forms['grouped_convs']} grouped convolutions; "
             f"{forms.get('weights', 'the same weights in every form')}.",
             "", "| stage | form | why |", "|---|---|---|"]
    for stage, label in (("training", "float training"), ("quantization", "int8 (QAT / PTQ)"),
                         ("export", f"export ({forms.get('export', {}).get('profile', 'target')})")):
        f = forms.get(stage) or {}
        lines.append(f"| {label} | {f.get('group_conv') or '-'} | {f.get('reason', '-')} |")
    return lines + [""]


def render_markdown(summary):
    """``report.md`` text from a summary dict."""
    s, acc, bench = summary, summary["accuracy"], summary["host_benchmark"]
    c = s["config"]
    lines = [f"# kerasnets-run: {s['model']} on {s['dataset']}", "",
             f"Input {s['input_size'][0]}x{s['input_size'][1]}, {s['train_images']} training images, "
             f"{s['test_images']} test images; float {c['epochs']} epoch(s), int8 by "
             f"{s['quantization'].upper()}" + (f" ({c['qat_epochs']} epoch(s))" if s["quantization"] == "qat" else "")
             + f", calibration {c['calibration_count']} real training images.", ""]
    lines += _forms_lines(s.get("forms"))
    lines += ["## Artifacts: accuracy and host latency (measured)", "",
             f"Top-1 over the whole test split in LiteRT; latency = median (p90) of {bench['threads']}-thread "
             f"invokes on this host ({bench['cpu']}), float32 and int8 interleaved in one run.", "",
             "| artifact | top-1 % | median ms | p90 ms | size KiB |", "|---|---|---|---|---|"]
    for k in ("float32", "int8", "partitioned"):
        b = bench[k]
        lines.append(f"| {k} | {_pct(acc[k])} | {b['median_ms']:.3f} | {b['p90_ms']:.3f} | "
                     f"{s['sizes_bytes'][k] / 1024:.1f} |")
    lines += ["", f"int8 speed-up over float32 on the host: {bench['int8_speedup']:.2f}x. Keras float top-1: "
              f"{_pct(s['accuracy_keras_float'])}. The partitioned pair runs both parts on the host here; "
              "on the device the first part runs on the NPU.", "",
              "## Verification against Keras", "",
              "| artifact | samples | max abs error | within limit (limit, required) | top-1 agreement | passed |",
              "|---|---|---|---|---|---|"]
    for k, v in s["verification"].items():
        t = v["tolerance"]
        within = (f"{v['within_error_share']:.0%} ({t['max_abs_error']:g}, {t['within_error_share']:.0%})"
                  if "within_error_share" in v else "-")  # runs made before the share was recorded
        lines.append(f"| {k} | {v['samples']} | {v['max_abs_error']:.4g} | {within} | {v['top1_agreement']:.3f} | "
                     f"{'yes' if v['passed'] else 'NO'} |")
    lines += ["", "## Estimated latency per hardware profile", "",
              "From `kerasnets.export.cost` (the profiles in `export/profiles/`); the whole model, `max_npu` placement.", "",
              "| profile | precision | latency ms | fps | MAC utilization | ops on NPU / CPU |", "|---|---|---|---|---|---|"]
    estimated_forms = sorted({f"{k}: {e['group_conv']}" for k, e in s["estimate"].items() if e.get("group_conv")})
    for key, e in sorted(s["estimate"].items()):
        util = f"{100 * e['mac_utilization']:.1f}%" if e.get("mac_utilization") is not None else "-"
        ops = f"{e['npu_ops']} / {e['cpu_ops']}" if e.get("npu_ops") is not None else "-"
        lines.append(f"| {key} | {e['precision']} | {e['latency_ms']:.3f} | {e['fps']:.1f} | {util} | {ops} |")
    if estimated_forms:
        lines += ["", "Each profile is estimated with its grouped convolutions in the form it takes: "
                  + ", ".join(estimated_forms) + "."]
    host = {k: v for k, v in s["estimate"].items() if v["profile"] == "host_cpu"}
    if host:
        lines += ["", "Host CPU estimate against the measurement above: " + ", ".join(
            f"{v['precision']} {v['latency_ms']:.3f} ms estimated vs {s['host_latency_ms'][v['precision']]:.3f} ms "
            "measured" for v in host.values() if v["precision"] in s["host_latency_ms"]) + "."]
        builtin = [k for k in ("float32", "int8") if bench.get(k, {}).get("kernels") == "builtin"]
        if builtin:
            lines += ["", f"The {' and '.join(builtin)} measurement ran on LiteRT's builtin kernels (its XNNPACK delegate "
                      "refused the model), not the XNNPACK kernels the host_cpu profile models: that comparison does "
                      "not apply."]
        fitted = {v.get("fitted_on") for v in host.values()} - {None}
        if fitted and bench["cpu"] not in fitted:
            lines += ["", f"Note: the host_cpu profile was fitted on {', '.join(sorted(map(str, fitted)))}, not on this "
                      f"host ({bench['cpu']}); run `kerasnets-estimate --calibrate` here to fit it to this machine."]
    p = s["partition"]
    lines += ["", f"## Partition for {p['profile']} ({p['policy']})", "",
              f"Cut after `{p['cut']['after']}` ({', '.join(p['cut']['tensors']) or 'no tensor'} crosses to the CPU): "
              f"{p['npu_layers']} layers on the NPU ({p['npu_ops']} TFLite ops, int8), {p['cpu_layers']} on the CPU "
              f"({p['cpu_ops']} ops, float32). Estimated {p['estimate']['latency_ms']:.3f} ms "
              f"({p['estimate']['fps']:.1f} fps): NPU {p['estimate']['npu_ms']:.3f} ms, CPU {p['estimate']['cpu_ms']:.3f} "
              f"ms, transfers {p['estimate']['transfer_ms']:.3f} ms. Weights: {p['weights']}. Plan: `{p['plan']}`, "
              f"compiler-style log: `{p['log']}`.", "",
              "| part | device | mode | KiB |", "|---|---|---|---|"]
    for f in p["files"]:
        lines.append(f"| `{f['file']}` | {f['device']} | {f['mode']} | {f['size_bytes'] / 1024:.1f} |")
    lines += ["", "## Plots", "", f"![accuracy vs latency]({s['plots']['accuracy_latency']})", "",
              f"![per-layer cost]({s['plots']['layer_cost']})", "",
              "## Steps", "", "| step | seconds |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in s["seconds"].items()]
    return "\n".join(lines) + "\n"


def write_report(summary, out_dir):
    """Write ``summary.json``, the two plots and ``report.md`` into ``out_dir`` (each atomically)."""
    plot_accuracy_latency(summary, os.path.join(out_dir, summary["plots"]["accuracy_latency"]))
    plot_layer_cost(summary, os.path.join(out_dir, summary["plots"]["layer_cost"]))
    atomic_write(os.path.join(out_dir, "summary.json"), json.dumps(summary, indent=1, sort_keys=True) + "\n")
    atomic_write(os.path.join(out_dir, "report.md"), render_markdown(summary))

"""The search benchmark of issue 14: does kerasnets-search beat the hand-made models at their own speed?

    .venv/bin/python benchmarks/search_benchmark.py [--base=axspine] [--trials=200] [--top_k=3] [--epochs=2]
        [--train_subset=3000] [--val_subset=1000] [--out=/tmp/search_benchmark]

On m55h at 576x320 with AXSpine-Middle's estimated frame rate there as the budget, it prints:

* the time of one spec-level estimate with every block cached and with none cached (a fresh
  :class:`kerasnets.export.speccost.SpecCoster`), beside building, analyzing and estimating the Keras model;
* the search (:func:`kerasnets.pipelines.search.run_search`, training proxy): candidates per second of the
  estimator loop, the estimator front, and the scored candidates with their test top-1;
* mobilenet_v2_100 and axspine_middle trained by the same function at the same small setting
  (Fashion-MNIST at 32x32, ``train_subset`` images, ``epochs``, seed 0), and whether the search's
  best candidate beats both in accuracy, or says that it does not.

About 10-15 minutes on 2 cores with the defaults.
"""
import dataclasses
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("base", "axspine", "Base family of the search.")
flags.DEFINE_string("profile", "m55h", "Hardware profile.")
flags.DEFINE_string("input_size", "576x320", "Deployment input size HEIGHTxWIDTH the latency is estimated at.")
flags.DEFINE_string("budget_model", "axspine_middle", "Zoo model whose estimated fps is the budget.")
flags.DEFINE_integer("trials", 200, "Estimator-loop trials.")
flags.DEFINE_integer("top_k", 3, "Candidates trained.")
flags.DEFINE_integer("epochs", 2, "Training epochs of every trained model.")
flags.DEFINE_integer("train_subset", 3000, "Training images.")
flags.DEFINE_integer("val_subset", 1000, "Test images.")
flags.DEFINE_integer("batch_size", 64, "Batch size.")
flags.DEFINE_integer("repeats", 20, "Cached estimates timed.")
flags.DEFINE_string("out", None, "Search folder (default: a temporary folder, removed at the end).")
REFERENCES = ("mobilenet_v2_100", "axspine_middle")


def _time_estimates(coster_cls, spec, shape, classes, profile, repeats):
    """(ms uncached, ms cached, ms whole model) for one spec."""
    import kerasnets
    from kerasnets.export import cost
    coster = coster_cls(shape, classes=classes)
    t0 = time.perf_counter()
    coster.estimate(spec, profile)
    uncached = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(repeats):
        coster.estimate(dataclasses.replace(spec, name=f"{spec.name}_copy{i}"), profile)
    cached = (time.perf_counter() - t0) / repeats
    t0 = time.perf_counter()
    cost.estimate(kerasnets.get_model(spec=spec, input_shape=shape, classes=classes), profile)
    whole = time.perf_counter() - t0
    return uncached * 1e3, cached * 1e3, whole * 1e3, coster.stats


def main(argv):
    from kerasnets.export.profiles import load_profile
    from kerasnets.export.speccost import SpecCoster
    from kerasnets.cli import parse_size
    from kerasnets.zoo import get_spec
    from kerasnets.pipelines import data as data_lib
    from kerasnets.pipelines import search
    h, w = parse_size(FLAGS.input_size)
    profile = load_profile(FLAGS.profile)
    classes = 10  # Fashion-MNIST
    shape = (h, w, 3)
    budget_spec = get_spec(FLAGS.budget_model)
    print(f"== setting: {profile.name}, {h}x{w}, {classes} classes, base {FLAGS.base}, trials {FLAGS.trials}, "
          f"top_k {FLAGS.top_k}; training: Fashion-MNIST {FLAGS.train_subset} images, {FLAGS.epochs} epoch(s) at "
          f"32x32, batch {FLAGS.batch_size}, seed 0, test top-1 on {FLAGS.val_subset} test images")

    print("== time per estimate (spec-level, export.speccost)")
    for name in REFERENCES:
        uncached, cached, whole, stats = _time_estimates(SpecCoster, get_spec(name), shape, classes, profile,
                                                         FLAGS.repeats)
        print(f"{name:18s} uncached {uncached:7.1f} ms ({stats['misses']} blocks built, "
              f"{stats['build_s'] / stats['misses'] * 1e3:.0f} ms each); cached {cached:5.2f} ms; whole model "
              f"(build + analyze + estimate) {whole:7.1f} ms")

    budget_fps = SpecCoster(shape, classes=classes).estimate(budget_spec, profile)["totals"]["fps"]
    print(f"== budget: {FLAGS.budget_model} estimated at {budget_fps:.1f} fps ({1e3 / budget_fps:.3f} ms)")
    out = FLAGS.out or os.path.join(tempfile.mkdtemp(), "search")
    config = search.SearchConfig(base=FLAGS.base, profile=profile.name, input_size=(h, w), fps=budget_fps,
                                 proxy="train", trials=FLAGS.trials, top_k=FLAGS.top_k, train_subset=FLAGS.train_subset,
                                 val_subset=FLAGS.val_subset, epochs=FLAGS.epochs, batch_size=FLAGS.batch_size)
    started = time.perf_counter()
    result = search.run_search(config, out, resume=os.path.isfile(os.path.join(out, search.JOURNAL)),
                               log=lambda line: print(f"   {line}", flush=True))
    summary = result.summary
    print(f"== search ({time.perf_counter() - started:.0f} s)")
    print(search.format_summary(summary))
    print("estimator front (within budget): " + ", ".join(
        f"{c['latency_ms']:.2f} ms/{c['macs'] / 1e6:.0f}M" for c in summary["estimator_front"]))

    print("== references, trained by pipelines.search.train_proxy at the same setting")
    coster = SpecCoster(shape, classes=classes)
    # The splits the search trained on (run_search checked config in place).
    train_split, val_split = data_lib.load_train_test(config.dataset, tuple(config.train_size), config.train_subset,
                                                      config.val_subset, config.seed)
    refs = {}
    for name in REFERENCES:
        spec = get_spec(name)
        work = tempfile.mkdtemp()
        try:
            r = search.train_proxy(spec, config, train_split, val_split, work,
                                   search.training_form(spec, coster))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        fps = coster.estimate(spec, profile)["totals"]["fps"]
        refs[name] = r["score"]
        print(f"{name:18s} {fps:7.1f} fps (estimated)  test top-1 {r['score']:.4f}  ({r['seconds']:.0f} s)")
    # The run-to-run spread at this setting: the budget model again, with another initialisation and order.
    spec = get_spec(FLAGS.budget_model)
    work = tempfile.mkdtemp()
    try:
        again = search.train_proxy(spec, dataclasses.replace(config, seed=1), train_split, val_split, work,
                                   search.training_form(spec, coster))["score"]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    spread = abs(again - refs[FLAGS.budget_model])
    print(f"{FLAGS.budget_model:18s} again with seed 1 (same images): test top-1 {again:.4f}, "
          f"|difference| {spread:.4f}: the run-to-run spread at this setting")
    best = summary["chosen"]
    print(f"best candidate {best['name']}: {best['fps']:.1f} fps (estimated), test top-1 {best['score']:.4f}; "
          f"params {best['params']}")
    beaten = [n for n, acc in refs.items() if best["score"] > acc]
    if len(beaten) == len(refs):
        print(f"VERDICT: the search's best candidate beats {' and '.join(REFERENCES)} in Fashion-MNIST accuracy "
              "at this setting, within the budget.")
    else:
        lost = [n for n in refs if n not in beaten]
        print(f"VERDICT: the search's best candidate does NOT beat {' and '.join(lost)} in Fashion-MNIST accuracy "
              "at this setting (" + ", ".join(f"{n} {refs[n]:.4f}" for n in refs) + f" vs {best['score']:.4f}).")
    margin = best["score"] - max(refs.values())
    print(f"margin over the best reference {margin:+.4f}, against a seed-to-seed difference of {spread:.4f} "
          "(one pair of runs)")
    if not FLAGS.out:
        shutil.rmtree(os.path.dirname(out), ignore_errors=True)
    return 0


if __name__ == "__main__":
    from kerasnets.cli import run_main  # one-sentence errors, exit 2
    run_main(main)

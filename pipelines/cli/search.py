"""kerasnets-search: hardware-aware architecture search under a latency budget (:mod:`kerasnets.pipelines.search`).

    kerasnets-search --base=axspine --profile=m55h --input_size=576x320 --fps=186 --out=runs/search
    kerasnets-search --base=mobilenet_v2 --profile=edgetpu_usb --latency_ms=3 --proxy=zero_cost --out=runs/s2
    kerasnets-search --out=runs/search --resume ...the same flags...    (continues an interrupted search)

NSGA-II (Optuna) samples candidates around the base family and costs each from its spec on
--profile at --input_size (the estimator, no model built per candidate); the --top_k largest
within the budget are ranked by --proxy (train: a short training run at --train_size on
--dataset; zero_cost: SNIP on one batch). Writes front.json, front.png, chosen_spec.json and
study.journal to --out.

Every input is checked before any work (the budget against the space's fastest candidate
too); a refused command writes nothing and exits 2 with one sentence.
"""
from absl import flags

from kerasnets.cli import define_flags, parse_size, print_json, run_main, verbosity
from kerasnets.pipelines import search
from kerasnets.pipelines.errors import ConfigError

FLAGS = flags.FLAGS
define_flags("input_size", "profile", "policy", "out", "dataset", "train_subset", "val_subset", "epochs", "batch_size",
             "learning_rate", "seed", "json", "verbose")
flags.DEFINE_string("base", "axspine", f"Base family to search around: {', '.join(search.BASES)}.")
flags.DEFINE_float("latency_ms", None, "Latency budget in ms on --profile at --input_size (or --fps).")
flags.DEFINE_float("fps", None, "Frame-rate budget on --profile at --input_size (or --latency_ms).")
flags.DEFINE_string("proxy", "train", f"Accuracy proxy: {', '.join(search.PROXIES)}.")
flags.DEFINE_integer("trials", 200, "Estimator-loop trials (candidates costed on the profile).")
flags.DEFINE_integer("top_k", 3, "Candidates within the budget ranked by the proxy.")
flags.DEFINE_string("train_size", "32x32", "Input size HEIGHTxWIDTH candidates are trained or scored at.")
flags.DEFINE_float("bn_momentum", 0.9, "BatchNorm momentum of the proxy trainings (short runs: see "
                   "kerasnets.pipelines.search.SearchConfig).")
if "resume" in FLAGS:  # defined by the training scripts, imported into the same process
    flags.declare_key_flag("resume")
else:
    flags.DEFINE_bool("resume", False, "Continue the search in --out.", allow_override=True)


def _size(text, flag):
    return None if text is None else parse_size(text, flag)


def main(argv):
    if not FLAGS.out:
        raise ConfigError("--out (alias --output_dir) is required; pass the folder for the study and its results.")
    config = search.SearchConfig(
        base=FLAGS.base, profile=FLAGS.profile, input_size=_size(FLAGS.input_size, "input_size"),
        latency_ms=FLAGS.latency_ms, fps=FLAGS.fps, proxy=FLAGS.proxy, trials=FLAGS.trials, top_k=FLAGS.top_k,
        policy=FLAGS.policy or "max_npu", dataset=FLAGS.dataset, train_size=_size(FLAGS.train_size, "train_size"),
        train_subset=FLAGS.train_subset, val_subset=FLAGS.val_subset, epochs=FLAGS.epochs,
        batch_size=FLAGS.batch_size, learning_rate=FLAGS.learning_rate, bn_momentum=FLAGS.bn_momentum,
        seed=FLAGS.seed, verbose=verbosity())
    log = (lambda line: None) if FLAGS.json else (lambda line: print(line, flush=True))
    result = search.run_search(config, FLAGS.out, resume=FLAGS.resume, log=log)
    if FLAGS.json:
        print_json({**result.summary, "files": result.files})
    else:
        print(search.format_summary(result.summary))
        print(f"wrote {', '.join(result.files.values())}")
    return 0


def run():
    run_main(main)


if __name__ == "__main__":
    run()

"""kerasnets-train: float training of a zoo model on real data.

    kerasnets-train --model=mobilenet_v2_035 --data=fashion_mnist --epochs=10 --out=runs/mnv2
    kerasnets-train --flagfile=train.flags --resume --json
    kerasnets-train --model=mobilenet_v2_100 --weights=hf://timm/mobilenetv2_100.ra_in1k --data=/data/flowers --out=runs/ft

Every flag, the output folder, the data and the model (built with --overrides, checked
against this machine's memory) are checked before the first write; a refused command leaves
nothing behind and exits 2 with one sentence.
"""
from kerasnets.cli import define_flags, run_main
from kerasnets.errors import UsageError
from kerasnets.pipelines import train
from kerasnets.pipelines.cli import common, emit

common.define_common()
define_flags("weights")


def main(argv):
    if len(argv) > 1:
        raise UsageError(f"unexpected arguments {argv[1:]}; every option is a --flag.")
    config = common.train_config()
    out = common.output_dir()
    common.check_resume(out)
    tr, va = common.load_splits()
    common.check_model(config, tr.num_classes)  # bad --overrides, sizes beyond memory: refused before training
    result = train.fit(config, tr, va, out, resume=common.FLAGS.resume)
    summary = {"model": config.model, "output_dir": result.output_dir, **result.metrics,
               "weights": f"{result.output_dir}/final.weights.h5"}
    emit(summary, common.FLAGS.json)
    if not common.FLAGS.json:
        print(" ".join(f"{k}={v}" for k, v in summary.items()))


def run():
    run_main(main, positional=True)  # main itself refuses positional arguments, with its own message


if __name__ == "__main__":
    run()

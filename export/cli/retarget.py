"""`kerasnets-retarget --model=NAME --profile=P [--input_size=HxW] [--level=function|architecture]
[--out=SPEC.json] [--json]`

Adapts a zoo model to a hardware profile with the rules the profile's ``retarget`` section
lists (:mod:`kerasnets.export.retarget`) and prints the change table: each rule, the layers or blocks
it touched, its reason (citing the profile field) and the estimated latency before -> after.
``--level=function`` (default) keeps the weights and the outputs (build options only);
``--level=architecture`` also changes the spec (depthwise -> group conv, channel alignment,
activation fallbacks), so the result must be retrained. ``--out`` writes the adapted spec
with its build options as JSON (``kerasnets.get_model(spec=PATH)`` builds it).

Every input is checked before any work: the flags, the profile (an NPU's, with a retarget
section), the model at its size and the output path.
"""
from absl import flags

from kerasnets.export import retarget
from kerasnets.export.cli import zoo_model
from kerasnets.export.placement import POLICIES
from kerasnets.export.profiles import RETARGET_LEVELS
from kerasnets.cli import define_flags, model_flags, print_json, run_main
from kerasnets.spec import save_spec

FLAGS = flags.FLAGS
define_flags("model", "spec", "input_size", "profile", "policy", "out", "classes", "shuffle", "group_conv", "json")
flags.DEFINE_string("level", "function", "Retarget level: function (same weights and outputs) or architecture "
                    "(also the spec transforms, retraining needed).")

SPEC_BYTES = 1 << 20


def main(argv):
    level = zoo_model.check_choice(FLAGS.level, RETARGET_LEVELS, "level")
    policy = zoo_model.check_choice(FLAGS.policy or "max_npu", POLICIES, "policy")
    overrides = zoo_model.model_overrides(FLAGS.shuffle, FLAGS.group_conv)
    profile = retarget.retarget_profile(FLAGS.profile)
    name, spec = model_flags()
    h, w = zoo_model.model_size(name, FLAGS.input_size, spec)
    if FLAGS.out is not None:
        zoo_model.check_output_file(FLAGS.out, "out", "SPEC.json")
        zoo_model.check_space(FLAGS.out, SPEC_BYTES, "out")
    result = retarget.retarget(spec or name, profile, input_shape=(h, w, 3), level=level, policy=policy,
                               classes=FLAGS.classes, **overrides)
    if FLAGS.out:
        zoo_model.writing(FLAGS.out, lambda: save_spec(result.spec, FLAGS.out, result.options))
    if FLAGS.json:
        print_json({**result.as_dict(), "input_size": [h, w], "out": FLAGS.out})
    else:
        print(result.table(), end="")
        if FLAGS.out:
            print(f"wrote spec {result.spec.name} with build options {result.options} to {FLAGS.out}")
    return 0


def run():
    run_main(main)


if __name__ == "__main__":
    run()

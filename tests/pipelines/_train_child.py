"""Child process for the distribution tests: trains a tiny model and prints a JSON line.

argv: strategy output_dir [logical_cpus]
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from kerasnets.backend import tf  # noqa: E402

if len(sys.argv) > 3:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * int(sys.argv[3]))

from kerasnets.pipelines import data, train  # noqa: E402

tr = data.load_fashion_mnist("train").take(64, seed=0)
va = data.load_fashion_mnist("test").take(32)
config = train.TrainConfig(model="mobilenet_v2_035", epochs=2, batch_size=16, strategy=sys.argv[1], verbose=0,
                           tensorboard=False)
strategy = train.make_strategy(sys.argv[1])
result = train.fit(config, tr, va, sys.argv[2])
print("RESULT " + json.dumps({"replicas": strategy.num_replicas_in_sync, **result.metrics}), flush=True)

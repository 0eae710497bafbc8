"""ONNX export, for NPU toolchains that take ONNX (Axera Pulsar2, Rockchip RKNN).

Goes through tf2onnx at batch 1 with static shapes, after the deploy transforms, and is
checked with onnxruntime against Keras. Both are the optional ``onnx`` extra
(``pip install -e '.[onnx]'``); they are verified to work with the pinned TensorFlow.
"""
import numpy as np

import kerasnets
from kerasnets.export.tflite import ExportError
from kerasnets.backend import tf
from kerasnets.io import atomic_write
from kerasnets.export.runtime import VerificationError


def _require():
    try:
        import onnxruntime  # noqa: F401
        import tf2onnx  # noqa: F401
    except ImportError as e:
        raise ExportError(f"ONNX export needs tf2onnx and onnxruntime ({e.name} is missing); "
                          "install them with pip install -e '.[onnx]'.") from None


def to_onnx(model, opset=17, deploy=True):
    """Serialized ONNX model (bytes) of a float Keras model at batch 1."""
    _require()
    import tf2onnx  # lazy: optional dependency (the onnx extra), checked by _require
    if deploy:
        model = kerasnets.deploy(model)
    shape = tuple(model.input_shape[1:])
    if any(d is None for d in shape):
        raise ExportError(f"model input shape {shape} is not static; build the model with a fixed input_shape.")
    spec = (tf.TensorSpec((1,) + shape, tf.float32, name="input"),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=int(opset))
    return proto.SerializeToString()


def run_onnx(content, images):
    """Outputs of an ONNX model for float images (N, H, W, C), one image at a time."""
    _require()
    import onnxruntime as ort  # lazy: optional dependency (the onnx extra), checked by _require
    session = ort.InferenceSession(content, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: image[None]})[0] for image in np.asarray(images, np.float32)])


def verify_onnx(keras_model, content, images, atol=1e-4):
    """Max abs error and top-1 agreement of the ONNX model against Keras; raises beyond ``atol``."""
    expected = keras_model.predict(np.asarray(images, np.float32), verbose=0)
    got = run_onnx(content, images)
    err = float(np.abs(expected - got).max())
    agree = float(np.mean(expected.argmax(-1) == got.argmax(-1)))
    if err > atol:
        raise VerificationError(f"ONNX model disagrees with Keras: max abs error {err:.3g} > {atol}.")
    return {"mode": "onnx", "samples": len(images), "max_abs_error": err, "top1_agreement": agree}


def write_onnx(path, content):
    """Write an ONNX file atomically."""
    atomic_write(path, content)

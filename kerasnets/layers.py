"""The few custom layers of kerasnets.

Each is serializable (``get_config``), registered for Keras loading under the
``kerasnets`` package, and free of Python lambdas, so ``.keras`` files load with
``safe_mode=True``. Every other op of the zoo is a stock Keras layer.
"""
import math

from kerasnets.backend import keras, tf
from kerasnets.errors import ModelConfigError

_register = keras.saving.register_keras_serializable(package="kerasnets")

SHUFFLE_MODES = ("low_rank", "5d")
SHUFFLE_ORDERS = ("groups_first", "groups_last")


@_register
class ChannelShuffle(keras.layers.Layer):
    """ShuffleNet channel shuffle, in one of two orders (with k = C / groups):

    * ``order="groups_first"`` (default): channels viewed as (groups, k), transposed and
      flattened, so channel ``g*k + i`` moves to ``i*groups + g``. The paper's shuffle,
      torchvision's ``channel_shuffle`` (ShuffleNet V2) and kerasnets' "tf" convention.
    * ``order="groups_last"``: channels viewed as (k, groups), so channel ``i*groups + g``
      moves to ``g*k + i``, the inverse permutation. Megvii's official ShuffleNet V1
      (``x.reshape(b, k, groups, h, w).permute(0, 2, 1, 3, 4)``), the "torch" convention.

    ``mode="low_rank"`` (default) reshapes (N, H, W, C) to (N, H*W, groups, k) (or
    (N, H*W, k, groups)), swaps the last two axes and reshapes back, so at batch 1 no
    tensor of the graph has more than 3 non-unit dimensions (the Edge TPU's rule).
    ``mode="5d"`` is the textbook form through (N, H, W, groups, k), kept to show what
    the rule forbids.
    """

    def __init__(self, groups, mode="low_rank", order="groups_first", **kwargs):
        super().__init__(**kwargs)
        if mode not in SHUFFLE_MODES:
            raise ModelConfigError(f"ChannelShuffle mode {mode!r} is unknown; use one of {SHUFFLE_MODES}.")
        if order not in SHUFFLE_ORDERS:
            raise ModelConfigError(f"ChannelShuffle order {order!r} is unknown; use one of {SHUFFLE_ORDERS}.")
        self.groups = int(groups)
        self.mode = mode
        self.order = order

    def build(self, input_shape):
        channels = int(input_shape[-1])
        if channels % self.groups:
            raise ModelConfigError(f"ChannelShuffle cannot split {channels} channels into {self.groups} "
                             "equal groups; use a channel count divisible by the groups.")
        super().build(input_shape)

    def call(self, inputs):
        shape = tf.shape(inputs)
        h, w, c = inputs.shape[1], inputs.shape[2], inputs.shape[3]
        h = shape[1] if h is None else h
        w = shape[2] if w is None else w
        per_group = c // self.groups
        view = [self.groups, per_group] if self.order == "groups_first" else [per_group, self.groups]
        if self.mode == "low_rank":
            x = tf.reshape(inputs, [-1, h * w] + view)
            x = tf.transpose(x, [0, 1, 3, 2])
        else:
            x = tf.reshape(inputs, [-1, h, w] + view)
            x = tf.transpose(x, [0, 1, 2, 4, 3])
        return tf.reshape(x, [-1, h, w, c])

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "groups": self.groups, "mode": self.mode, "order": self.order}


@_register
class ChannelSlice(keras.layers.Layer):
    """Channels ``[start, start + size)`` of an NHWC tensor (ShuffleNetV2's split)."""

    def __init__(self, start, size, **kwargs):
        super().__init__(**kwargs)
        self.start = int(start)
        self.size = int(size)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        if self.start < 0 or self.size < 1 or self.start + self.size > channels:
            raise ModelConfigError(f"ChannelSlice [{self.start}, {self.start + self.size}) does not fit "
                             f"in {channels} channels; pick a range inside the input.")
        super().build(input_shape)

    def call(self, inputs):
        return inputs[..., self.start:self.start + self.size]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.size,)

    def get_config(self):
        return {**super().get_config(), "start": self.start, "size": self.size}


@_register
class GroupConv2D(keras.layers.Conv2D):
    """Grouped convolution written out as split -> one conv per group -> concat.

    The weights are exactly those of ``Conv2D(groups=g)`` (kernel of shape
    (kh, kw, cin/g, cout), optional bias), so the two forms are interchangeable; this
    one is for NPU compilers that do not take a grouped CONV_2D.

    ``kernel_slice_quantizer`` (a callable, None by default; set by quantization-aware training)
    fake-quantizes each group's kernel after the split, so that the TFLite converter turns each
    slice into the int8 weights of its own CONV_2D; a fake-quantized whole kernel split at run
    time would leave a TRANSPOSE of every slice in the int8 graph.
    """
    kernel_slice_quantizer = None

    def call(self, inputs):
        groups = self.groups
        xs = tf.split(inputs, groups, axis=-1)
        ks = tf.split(self.kernel, groups, axis=-1)
        if self.kernel_slice_quantizer is not None:
            ks = [self.kernel_slice_quantizer(k) for k in ks]
        strides = (1,) + tuple(self.strides) + (1,)
        outs = [tf.nn.conv2d(x, k, strides=strides, padding=self.padding.upper(),
                             dilations=(1,) + tuple(self.dilation_rate) + (1,))
                for x, k in zip(xs, ks)]
        y = tf.concat(outs, axis=-1)
        if self.use_bias:
            y = tf.nn.bias_add(y, self.bias)
        if self.activation is not None:
            y = self.activation(y)
        return y


@_register
class HardSigmoid(keras.layers.Layer):
    """relu6(x + 3) / 6, the MobileNetV3 gate (Keras 2's ``hard_sigmoid`` is a different curve)."""

    def call(self, inputs):
        return tf.nn.relu6(inputs + 3.0) * (1.0 / 6.0)


@_register
class HardSwish(keras.layers.Layer):
    """x * relu6(x + 3) / 6 (MobileNetV3)."""

    def call(self, inputs):
        return inputs * tf.nn.relu6(inputs + 3.0) * (1.0 / 6.0)


@_register
class AdaptiveAveragePooling2D(keras.layers.Layer):
    """Average pooling to a fixed output grid, with PyTorch's bin rule.

    Bin i covers rows [floor(i*H/out), ceil((i+1)*H/out)). When the input already has the
    output size it is the identity; when it divides evenly it is one AVERAGE_POOL_2D.
    Lets VGG16's 7x7x512 classifier run at any input size.
    """

    def __init__(self, output_size=(7, 7), **kwargs):
        super().__init__(**kwargs)
        if isinstance(output_size, int):
            output_size = (output_size, output_size)
        self.output_size = tuple(int(v) for v in output_size)

    def call(self, inputs):
        h, w = inputs.shape[1], inputs.shape[2]
        oh, ow = self.output_size
        if h is None or w is None:
            raise ModelConfigError("AdaptiveAveragePooling2D needs a static input height and width; "
                             "build the model with a fixed input_shape.")
        if (h, w) == (oh, ow):
            return inputs
        if h % oh == 0 and w % ow == 0:
            return tf.nn.avg_pool2d(inputs, (h // oh, w // ow), (h // oh, w // ow), "VALID")
        rows = []
        for i in range(oh):
            r0, r1 = (i * h) // oh, math.ceil((i + 1) * h / oh)
            cols = []
            for j in range(ow):
                c0, c1 = (j * w) // ow, math.ceil((j + 1) * w / ow)
                cols.append(tf.reduce_mean(inputs[:, r0:r1, c0:c1, :], axis=[1, 2]))
            rows.append(tf.stack(cols, axis=1))
        return tf.stack(rows, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + self.output_size + (input_shape[-1],)

    def get_config(self):
        return {**super().get_config(), "output_size": list(self.output_size)}


CUSTOM_LAYERS = (ChannelShuffle, ChannelSlice, GroupConv2D, HardSigmoid, HardSwish,
                 AdaptiveAveragePooling2D)


def custom_objects():
    """Name -> class of every kerasnets layer, for ``keras.models.load_model``."""
    return {cls.__name__: cls for cls in CUSTOM_LAYERS}

"""Architecture specs: a model is a flat list of blocks plus a classifier top.

Family spec functions (``kerasnets.families``) turn compact stage tables into these
objects; ``kerasnets.builder.build_model`` turns any spec into a Keras model.
"""
import dataclasses
import math
from typing import Optional, Tuple

from kerasnets.errors import ModelConfigError


def make_divisible(value, divisor=8, min_value=None, round_limit=0.9):
    """Round ``value`` to a multiple of ``divisor`` (never below ``round_limit`` of it).

    The channel rule of the TF/timm reference implementations (MobileNet, EfficientNet,
    GhostNet): nearest multiple, bumped up one step when rounding lost more than 10%.
    """
    min_value = min_value or divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < round_limit * value:
        new_value += divisor
    return new_value


def align_up(value, alignment):
    """Smallest multiple of ``alignment`` that is >= ``value`` (hardware channel padding)."""
    return int(math.ceil(value / alignment) * alignment)


@dataclasses.dataclass(frozen=True)
class Block:
    """One block of a network.

    kind: ``conv`` (conv-BN-act), ``maxpool``, ``ds`` (depthwise separable), ``ir``
    (inverted residual), ``er`` (fused/edge residual), ``ghost``, ``repghost``,
    ``shuffle_v1``, ``shuffle_v2``, ``regnet_x``, ``vgg_conv`` (conv with bias + ReLU, no BN),
    ``bottleneck`` (ResNet V1: 1x1 (strided) -> 3x3 -> 1x1, post-activation),
    ``preact_bottleneck`` (ResNet V2: BN-ReLU first, stride in the 3x3), ``norm_act`` (BN + act).
    ``mid`` is the expanded (inner) width where the block has one; ``groups`` is the
    group count of a ``conv`` or ``shuffle_v1`` block's grouped convs; ``group_width`` the
    channels per group of the spatial conv of ``ir`` and ``regnet_x`` blocks (0 means
    depthwise); ``se`` the squeeze-excite ratio (0 = none) with ``se_channels``
    the reduced width; ``skip`` whether a residual is allowed when shapes match;
    ``head`` marks the final 1x1 conv that widens the features for the classifier
    (MobileNetV2's 1280 conv, ShuffleNet V2's conv5 ...), which feature endpoints skip.
    ``bias`` puts biases on a ``conv`` / ``vgg_conv`` block's conv and on every conv of a
    ``bottleneck`` (ResNet V2 always has them on its last 1x1 and its projection only);
    ``norm`` False drops a ``conv`` block's BatchNorm (ResNet V2's stem).
    """
    kind: str
    out: int
    kernel: int = 3
    stride: int = 1
    mid: int = 0
    groups: int = 1
    group_width: int = 0
    se: float = 0.0
    se_channels: int = 0
    se_gate: str = "hard_sigmoid"
    act: Optional[str] = "relu"
    skip: bool = True
    first_group_dense: bool = False  # ShuffleNet V1: dense first 1x1 of the first unit
    bias: bool = False
    head: bool = False
    norm: bool = True


@dataclasses.dataclass(frozen=True)
class Top:
    """Classifier top.

    kind ``pool_fc``: global average pool -> dropout -> dense.
    ``pool_conv_fc``: global pool -> 1x1 conv with bias (``channels``) -> ``act`` ->
    flatten -> dropout -> dense (GhostNet, MobileNetV3).
    ``vgg``: adaptive 7x7 average pool -> flatten -> 2x (dense ``channels`` + ReLU + dropout) -> dense.
    """
    kind: str = "pool_fc"
    channels: int = 0
    act: Optional[str] = "relu"
    dropout: float = 0.2
    fc_bias: bool = True


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A whole network: name, default input size, the blocks in order, and the top."""
    name: str
    blocks: Tuple[Block, ...]
    top: Top
    default_size: Tuple[int, int] = (224, 224)

    @property
    def total_stride(self):
        stride = 1
        for block in self.blocks:
            stride *= block.stride
        return stride

    def block_stages(self):
        """Stage of every block: log2 of its output stride (the stride-2 stem is stage 1)."""
        stages, stride = [], 1
        for block in self.blocks:
            stride *= block.stride
            if stride & (stride - 1):
                raise ModelConfigError(f"{self.name}: cumulative stride {stride} is not a power of 2; "
                                 "use block strides of 1 or 2.")
            stages.append(stride.bit_length() - 1)
        return stages

    def head_flags(self):
        """Which blocks are the classifier's 1x1 head conv (skipped by feature endpoints).

        Blocks marked ``head=True`` when any is; otherwise the default rule: the last
        block is the head when it is a 1x1 stride-1 ``conv`` block after blocks of
        another kind (e.g. AXSpine's 1280 conv).
        """
        flags = [b.head for b in self.blocks]
        if not any(flags) and len(self.blocks) > 1:
            last, prev = self.blocks[-1], self.blocks[-2]
            flags[-1] = last.kind == "conv" and last.kernel == 1 and last.stride == 1 and prev.kind != "conv"
        return flags

    def feature_blocks(self):
        """Level -> index of the block whose output is that feature endpoint.

        Levels follow timm's ``out_indices``: level ``i`` is reduction ``2 ** (i + 1)``
        (0 -> /2 ... 4 -> /32); its endpoint is the last non-head block of that stage.
        """
        ends = {}
        for index, (stage, head) in enumerate(zip(self.block_stages(), self.head_flags())):
            if stage >= 1 and not head:
                ends[stage - 1] = index
        return ends

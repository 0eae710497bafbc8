"""One builder that turns any ``ModelSpec`` into a functional tf_keras model."""
import dataclasses
import re
from typing import Optional

from kerasnets import layers as kn_layers
from kerasnets.backend import keras
from kerasnets.errors import ModelConfigError

L = keras.layers

GROUP_CONV_MODES = ("native", "split")
CONVENTIONS = ("tf", "torch")
_BN_EPSILON = {"tf": 1e-3, "torch": 1e-5}


@dataclasses.dataclass
class BuildOptions:
    """Graph-shaping options that do not change the weights (nor the parameter and MAC counts).

    group_conv: ``native`` emits ``Conv2D(groups=g)``; ``split`` emits
    :class:`kerasnets.layers.GroupConv2D` (split -> per-group conv -> concat).
    shuffle: channel shuffle form, ``low_rank`` (Edge-TPU safe) or ``5d``.
    convention: the numeric convention of the graph.

    * ``"tf"`` (default): Keras ``'same'`` padding (asymmetric, (0, 1) for a 3x3 stride-2
      window on an even input), BN epsilon 1e-3; no PAD op in TFLite. The function of
      timm's ``tf_*`` ports and of Keras Applications.
    * ``"torch"``: PyTorch's symmetric k//2 padding (an explicit ``ZeroPadding2D`` and a
      ``'valid'`` conv / pool wherever the window strides; stride-1 odd windows are
      already symmetric under ``'same'``), BN epsilon 1e-5, and for ShuffleNet V1
      Megvii's shuffle order and a stride-2 average pool that counts its zero padding.
      The function of timm's plain models, torchvision and Megvii's code.
    bn_epsilon: None means the convention's (1e-3 tf, 1e-5 torch).
    """
    group_conv: str = "native"
    shuffle: str = "low_rank"
    bn_epsilon: Optional[float] = None
    bn_momentum: float = 0.99
    convention: str = "tf"

    def __post_init__(self):
        if self.group_conv not in GROUP_CONV_MODES:
            raise ModelConfigError(f"group_conv={self.group_conv!r} is unknown; use one of {GROUP_CONV_MODES}.")
        if self.shuffle not in kn_layers.SHUFFLE_MODES:
            raise ModelConfigError(f"shuffle={self.shuffle!r} is unknown; use one of {kn_layers.SHUFFLE_MODES}.")
        if self.convention not in CONVENTIONS:
            raise ModelConfigError(f"convention={self.convention!r} is unknown; use one of {CONVENTIONS}.")
        if self.bn_epsilon is None:
            self.bn_epsilon = _BN_EPSILON[self.convention]


def activation(name, layer_name):
    """Activation layer by spec name (``relu``, ``relu6``, ``hard_swish``, ``hard_sigmoid``, ``sigmoid``)."""
    if name is None:
        return None
    if name == "relu":
        return L.ReLU(name=layer_name)
    if name == "relu6":
        return L.ReLU(6.0, name=layer_name)
    if name == "hard_swish":
        return kn_layers.HardSwish(name=layer_name)
    if name == "hard_sigmoid":
        return kn_layers.HardSigmoid(name=layer_name)
    if name == "sigmoid":
        return L.Activation("sigmoid", name=layer_name)
    raise ModelConfigError(f"activation {name!r} is unknown; use relu, relu6, hard_swish, hard_sigmoid or sigmoid.")


class _Graph:
    """Emits layers for one model, with the build options and readable layer names."""

    def __init__(self, options):
        self.opt = options
        self.prev_block = None  # the block emitted before the current one (None at the input)

    def window(self, x, kernel, stride, name):
        """(input, padding) of a kxk window: 'same', or in the torch convention, where the
        window strides, explicit symmetric k//2 zero padding and 'valid'."""
        if self.opt.convention == "torch" and stride > 1 and kernel // 2:
            return L.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x), "valid"
        return x, "same"

    def act(self, x, name, layer_name):
        layer = activation(name, layer_name)
        return x if layer is None else layer(x)

    def bn(self, x, name):
        return L.BatchNormalization(epsilon=self.opt.bn_epsilon, momentum=self.opt.bn_momentum, name=name)(x)

    def conv(self, x, filters, kernel, stride=1, groups=1, bias=False, name=None):
        """Plain, grouped or depthwise conv (depthwise when groups == in == out channels)."""
        cin = x.shape[-1]
        if groups > 1 and (cin % groups or filters % groups):
            raise ModelConfigError(f"layer {name}: {cin} input / {filters} output channels cannot be split "
                                   f"into {groups} groups; choose a width whose channels divide by the groups.")
        x, padding = self.window(x, kernel, stride, name)
        if groups > 1 and groups == cin == filters:
            return L.DepthwiseConv2D(kernel, stride, padding=padding, use_bias=bias, name=name)(x)
        if groups > 1 and self.opt.group_conv == "split":
            return kn_layers.GroupConv2D(filters, kernel, stride, padding=padding, groups=groups,
                                         use_bias=bias, name=name)(x)
        return L.Conv2D(filters, kernel, stride, padding=padding, groups=groups, use_bias=bias, name=name)(x)

    def conv_bn_act(self, x, filters, kernel, stride, act, name, groups=1, bias=False):
        x = self.conv(x, filters, kernel, stride, groups, bias=bias, name=f"{name}_conv")
        x = self.bn(x, f"{name}_bn")
        return self.act(x, act, f"{name}_{act}")

    def dw_bn(self, x, kernel, stride, name, act=None):
        x, padding = self.window(x, kernel, stride, f"{name}_dw")
        x = L.DepthwiseConv2D(kernel, stride, padding=padding, use_bias=False, name=f"{name}_dw")(x)
        x = self.bn(x, f"{name}_dw_bn")
        return self.act(x, act, f"{name}_dw_{act}")

    def squeeze_excite(self, x, reduced, gate, inner_act, name):
        channels = x.shape[-1]
        s = L.GlobalAveragePooling2D(keepdims=True, name=f"{name}_se_pool")(x)
        s = L.Conv2D(reduced, 1, use_bias=True, name=f"{name}_se_reduce")(s)
        s = self.act(s, inner_act, f"{name}_se_{inner_act}")
        s = L.Conv2D(channels, 1, use_bias=True, name=f"{name}_se_expand")(s)
        s = self.act(s, gate, f"{name}_se_gate")
        return L.Multiply(name=f"{name}_se_scale")([x, s])

    def residual(self, x, shortcut, block, name):
        if block.skip and block.stride == 1 and x.shape[-1] == shortcut.shape[-1]:
            return L.Add(name=f"{name}_add")([shortcut, x])
        return x

    def shuffle(self, x, groups, name, order="groups_first"):
        return kn_layers.ChannelShuffle(groups, mode=self.opt.shuffle, order=order, name=name)(x)

    # ---- blocks -------------------------------------------------------------------
    def block_conv(self, x, b, name):
        if not b.norm:
            x = self.conv(x, b.out, b.kernel, b.stride, b.groups, bias=b.bias, name=f"{name}_conv")
            return self.act(x, b.act, f"{name}_{b.act}")
        return self.conv_bn_act(x, b.out, b.kernel, b.stride, b.act, name, groups=b.groups, bias=b.bias)

    def block_norm_act(self, x, b, name):
        return self.act(self.bn(x, f"{name}_bn"), b.act, f"{name}_{b.act}")

    def block_maxpool(self, x, b, name):
        if self.opt.convention == "torch" and b.stride > 1 and b.kernel // 2:
            # PyTorch pads a max pool with -inf. Zero padding gives the same maximum only on a
            # non-negative input (every window also holds a real value), so require a ReLU before.
            prev = self.prev_block
            if prev is None or prev.act not in ("relu", "relu6"):
                raise ModelConfigError(f"block {name}: a torch-convention max pool needs a ReLU output "
                                       "before it (zero padding stands in for -inf); put it after a ReLU block.")
        x, padding = self.window(x, b.kernel, b.stride, f"{name}_maxpool")
        return L.MaxPooling2D(b.kernel, b.stride, padding=padding, name=f"{name}_maxpool")(x)

    def block_vgg_conv(self, x, b, name):
        x = L.Conv2D(b.out, b.kernel, padding="same", use_bias=True, name=f"{name}_conv")(x)
        x = L.ReLU(name=f"{name}_relu")(x)
        if b.stride > 1:
            x = L.MaxPooling2D(b.stride, b.stride, name=f"{name}_pool")(x)
        return x

    def _se(self, x, b, name):
        if b.se:
            x = self.squeeze_excite(x, b.se_channels, b.se_gate, "relu", name)
        return x

    def block_ds(self, x, b, name):
        shortcut = x
        x = self.dw_bn(x, b.kernel, b.stride, name, act=b.act)
        x = self._se(x, b, name)
        x = L.Conv2D(b.out, 1, use_bias=False, name=f"{name}_project_conv")(x)
        x = self.bn(x, f"{name}_project_bn")
        return self.residual(x, shortcut, b, name)

    def block_ir(self, x, b, name):
        """Inverted residual; the spatial conv is depthwise unless ``group_width`` is set."""
        shortcut = x
        x = self.conv_bn_act(x, b.mid, 1, 1, b.act, f"{name}_expand")
        groups = b.mid if b.group_width == 0 else b.mid // b.group_width
        x = self.conv(x, b.mid, b.kernel, b.stride, groups, name=f"{name}_spatial_conv")
        x = self.bn(x, f"{name}_spatial_bn")
        x = self.act(x, b.act, f"{name}_spatial_{b.act}")
        x = self._se(x, b, name)
        x = L.Conv2D(b.out, 1, use_bias=False, name=f"{name}_project_conv")(x)
        x = self.bn(x, f"{name}_project_bn")
        return self.residual(x, shortcut, b, name)

    def block_er(self, x, b, name):
        shortcut = x
        x = self.conv_bn_act(x, b.mid, b.kernel, b.stride, b.act, f"{name}_fused")
        x = L.Conv2D(b.out, 1, use_bias=False, name=f"{name}_project_conv")(x)
        x = self.bn(x, f"{name}_project_bn")
        return self.residual(x, shortcut, b, name)

    def _ghost_shortcut(self, shortcut, b, name):
        if shortcut.shape[-1] == b.out and b.stride == 1:
            return shortcut
        s = self.dw_bn(shortcut, b.kernel, b.stride, f"{name}_shortcut")
        s = L.Conv2D(b.out, 1, use_bias=False, name=f"{name}_shortcut_conv")(s)
        return self.bn(s, f"{name}_shortcut_bn")

    def ghost_module(self, x, out, act, name):
        """GhostNet module: primary 1x1 -> half the channels, cheap dw3x3 -> the rest, concat."""
        init = -(-out // 2)
        p = self.conv_bn_act(x, init, 1, 1, act, f"{name}_primary")
        c = L.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"{name}_cheap_dw")(p)
        c = self.bn(c, f"{name}_cheap_bn")
        c = self.act(c, act, f"{name}_cheap_{act}")
        if 2 * init > out:
            c = kn_layers.ChannelSlice(0, out - init, name=f"{name}_cheap_slice")(c)
        return L.Concatenate(name=f"{name}_concat")([p, c])

    def repghost_module(self, x, out, act, name):
        """RepGhost module (train form): primary 1x1, cheap dw3x3+BN added to BN(identity), act after add."""
        p = self.conv_bn_act(x, out, 1, 1, act, f"{name}_primary")
        c = L.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"{name}_cheap_dw")(p)
        c = self.bn(c, f"{name}_cheap_bn")
        f = self.bn(p, f"{name}_fusion_bn")
        y = L.Add(name=f"{name}_fusion_add")([c, f])
        return self.act(y, act, f"{name}_{act}")

    def _ghost_like(self, x, b, name, module):
        shortcut = x
        x = module(x, b.mid, b.act, f"{name}_ghost1")
        if b.stride > 1:
            x = self.dw_bn(x, b.kernel, b.stride, name)
        x = self._se(x, b, name)
        x = module(x, b.out, None, f"{name}_ghost2")
        return L.Add(name=f"{name}_add")([x, self._ghost_shortcut(shortcut, b, name)])

    def block_ghost(self, x, b, name):
        return self._ghost_like(x, b, name, self.ghost_module)

    def block_repghost(self, x, b, name):
        return self._ghost_like(x, b, name, self.repghost_module)

    def block_shuffle_v1(self, x, b, name):
        cin = x.shape[-1]
        branch_out = b.out - cin if b.stride == 2 else b.out
        g1 = 1 if b.first_group_dense else b.groups
        y = self.conv_bn_act(x, b.mid, 1, 1, "relu", f"{name}_gconv1", groups=g1)
        y = self.dw_bn(y, b.kernel, b.stride, name)
        if b.groups > 1:
            order = "groups_last" if self.opt.convention == "torch" else "groups_first"  # Megvii's order
            y = self.shuffle(y, b.groups, f"{name}_shuffle", order)
        y = self.conv(y, branch_out, 1, 1, b.groups, name=f"{name}_gconv2_conv")
        y = self.bn(y, f"{name}_gconv2_bn")
        if b.stride == 1:
            y = L.Add(name=f"{name}_add")([x, y])
            return L.ReLU(name=f"{name}_relu")(y)
        y = L.ReLU(name=f"{name}_relu")(y)
        # tf: 'same' averages over the real inputs only; torch: Megvii's AvgPool2d(3, 2, 1)
        # counts the zero padding (count_include_pad), i.e. ZeroPadding2D(1) + 'valid'.
        p, padding = self.window(x, 3, 2, f"{name}_avgpool")
        p = L.AveragePooling2D(3, 2, padding=padding, name=f"{name}_avgpool")(p)
        return L.Concatenate(name=f"{name}_concat")([p, y])

    def block_shuffle_v2(self, x, b, name):
        half = b.out // 2
        if b.stride == 1:
            cin = x.shape[-1]
            x1 = kn_layers.ChannelSlice(0, cin // 2, name=f"{name}_split_a")(x)
            x2 = kn_layers.ChannelSlice(cin // 2, cin - cin // 2, name=f"{name}_split_b")(x)
        else:
            x1 = self.dw_bn(x, b.kernel, b.stride, f"{name}_branch1")
            x1 = self.conv_bn_act(x1, half, 1, 1, "relu", f"{name}_branch1_pw")
            x2 = x
        y = self.conv_bn_act(x2, half, 1, 1, "relu", f"{name}_branch2_pw1")
        y = self.dw_bn(y, b.kernel, b.stride, f"{name}_branch2")
        y = self.conv_bn_act(y, half, 1, 1, "relu", f"{name}_branch2_pw2")
        y = L.Concatenate(name=f"{name}_concat")([x1, y])
        return self.shuffle(y, 2, f"{name}_shuffle")

    def block_regnet_x(self, x, b, name):
        shortcut = x
        y = self.conv_bn_act(x, b.mid, 1, 1, "relu", f"{name}_conv1")
        y = self.conv_bn_act(y, b.mid, b.kernel, b.stride, "relu", f"{name}_conv2", groups=b.mid // b.group_width)
        if b.se:
            y = self.squeeze_excite(y, b.se_channels, "sigmoid", "relu", name)
        y = self.conv(y, b.out, 1, name=f"{name}_conv3_conv")
        y = self.bn(y, f"{name}_conv3_bn")
        if shortcut.shape[-1] != b.out or b.stride != 1:
            shortcut = self.conv(shortcut, b.out, 1, b.stride, name=f"{name}_downsample_conv")
            shortcut = self.bn(shortcut, f"{name}_downsample_bn")
        y = L.Add(name=f"{name}_add")([y, shortcut])
        return L.ReLU(name=f"{name}_relu")(y)

    def block_bottleneck(self, x, b, name):
        """ResNet V1 (Keras Applications' ``block1``): the stride sits in the first 1x1."""
        shortcut = x
        if x.shape[-1] != b.out or b.stride != 1:
            shortcut = self.conv(x, b.out, 1, b.stride, bias=b.bias, name=f"{name}_downsample_conv")
            shortcut = self.bn(shortcut, f"{name}_downsample_bn")
        y = self.conv_bn_act(x, b.mid, 1, b.stride, "relu", f"{name}_conv1", bias=b.bias)
        y = self.conv_bn_act(y, b.mid, b.kernel, 1, "relu", f"{name}_conv2", bias=b.bias)
        y = self.bn(self.conv(y, b.out, 1, bias=b.bias, name=f"{name}_conv3_conv"), f"{name}_conv3_bn")
        y = L.Add(name=f"{name}_add")([y, shortcut])
        return L.ReLU(name=f"{name}_relu")(y)

    def block_preact_bottleneck(self, x, b, name):
        """ResNet V2 (Keras Applications' ``block2``): BN-ReLU first, the stride in the 3x3; a
        projection of the pre-activation where the width changes, else the (subsampled) input."""
        pre = L.ReLU(name=f"{name}_preact_relu")(self.bn(x, f"{name}_preact_bn"))
        if x.shape[-1] != b.out:
            shortcut = self.conv(pre, b.out, 1, b.stride, bias=True, name=f"{name}_downsample_conv")
        elif b.stride > 1:
            shortcut = L.MaxPooling2D(1, b.stride, name=f"{name}_downsample_pool")(x)
        else:
            shortcut = x
        y = self.conv_bn_act(pre, b.mid, 1, 1, "relu", f"{name}_conv1")
        y = self.conv_bn_act(y, b.mid, b.kernel, b.stride, "relu", f"{name}_conv2")
        y = self.conv(y, b.out, 1, bias=True, name=f"{name}_conv3_conv")
        return L.Add(name=f"{name}_add")([y, shortcut])

    def _group_count(self, channels, group_width, name, what="input"):
        """Groups of a conv with ``group_width`` channels per group (HAT's ``int(C / group_base)``)."""
        if group_width < 1:
            raise ModelConfigError(f"layer {name}: group_width={group_width} must be a positive channels-per-group "
                                   "count; set it (VarGNet's group_base, e.g. 8).")
        if channels % group_width:
            raise ModelConfigError(f"layer {name}: {channels} {what} channels are not a multiple of "
                                   f"group_width {group_width}; choose a width or group_width that divides them.")
        return channels // group_width

    def sgc(self, x, out, stride, b, name):
        """VarGNet's separable group conv: kxk grouped conv (``group_width`` inputs per group, widening
        by ``factor``) -> BN -> act -> 1x1 conv -> BN, no activation at the end."""
        cin = x.shape[-1]
        wide = int(cin * b.factor)
        if wide < 1:
            raise ModelConfigError(f"layer {name}: factor {b.factor} leaves {cin} channels {wide} wide; use a "
                                   "factor of at least 1 / the channels (e.g. head_factor=2 with group_base 16).")
        groups = self._group_count(cin, b.group_width, f"{name}_gconv_conv")
        x = self.conv_bn_act(x, wide, b.kernel, stride, b.act, f"{name}_gconv", groups=groups, bias=b.bias)
        x = self.conv(x, out, 1, bias=b.bias, name=f"{name}_pw_conv")
        return self.bn(x, f"{name}_pw_bn")

    def block_varg(self, x, b, name):
        """Horizon's BasicVarGBlock (VargNetV2): SGC (+ a merged parallel SGC) -> act -> SGC, plus an
        identity or SGC shortcut, act after the add."""
        mid = b.mid or b.out
        if b.stride == 1 and x.shape[-1] == b.out:
            shortcut = x
        else:
            shortcut = self.sgc(x, b.out, b.stride, b, f"{name}_shortcut")
        y = self.sgc(x, mid, b.stride, b, f"{name}_part1")
        if b.merge:
            y = L.Add(name=f"{name}_merge_add")([y, self.sgc(x, mid, b.stride, b, f"{name}_part1_merge")])
        y = self.act(y, b.act, f"{name}_part1_{b.act}")
        y = self.sgc(y, b.out, 1, b, f"{name}_part2")
        y = L.Add(name=f"{name}_add")([y, shortcut])
        return self.act(y, b.act, f"{name}_{b.act}")

    def block_mixvarge(self, x, b, name):
        """Horizon's BasicMixVarGEBlock (MixVarGENet): conv (dense or grouped) -> BN -> act -> conv -> BN,
        plus an identity or 1x1-conv shortcut, act after the add."""
        cin = x.shape[-1]
        g1 = self._group_count(cin, b.group_width, f"{name}_conv1_conv") if b.group_width else 1
        g2 = self._group_count(b.out, b.group_width2, f"{name}_conv2_conv", "output") if b.group_width2 else 1
        y = self.conv_bn_act(x, b.mid, b.kernel, b.stride, b.act, f"{name}_conv1", groups=g1, bias=b.bias)
        y = self.bn(self.conv(y, b.out, b.kernel2, 1, g2, bias=b.bias, name=f"{name}_conv2_conv"), f"{name}_conv2_bn")
        if b.skip and b.stride == 1 and cin == b.out:
            shortcut = x
        else:
            shortcut = self.conv(x, b.out, 1, b.stride, bias=True, name=f"{name}_shortcut_conv")
            shortcut = self.bn(shortcut, f"{name}_shortcut_bn")
        y = L.Add(name=f"{name}_add")([y, shortcut])
        return self.act(y, b.act, f"{name}_{b.act}")

    # ---- top -------------------------------------------------------------------
    def top(self, x, top, classes, classifier_activation):
        if top.kind == "vgg":
            x = kn_layers.AdaptiveAveragePooling2D((7, 7), name="avgpool")(x)
            x = L.Flatten(name="flatten")(x)
            for i in (1, 2):
                x = L.Dense(top.channels, name=f"fc{i}")(x)
                x = L.ReLU(name=f"fc{i}_relu")(x)
                x = L.Dropout(top.dropout, name=f"fc{i}_dropout")(x)
        elif top.kind == "pool_conv_fc":
            x = L.GlobalAveragePooling2D(keepdims=True, name="avg_pool")(x)
            x = L.Conv2D(top.channels, 1, use_bias=True, name="head_conv")(x)
            x = self.act(x, top.act, f"head_{top.act}")
            x = L.Flatten(name="flatten")(x)
            x = L.Dropout(top.dropout, name="dropout")(x)
        elif top.kind == "pool_fc":
            x = L.GlobalAveragePooling2D(name="avg_pool")(x)
            x = L.Dropout(top.dropout, name="dropout")(x)
        elif top.kind == "pool_conv_bn":
            x = L.GlobalAveragePooling2D(keepdims=True, name="avg_pool")(x)
            x = L.Conv2D(classes, 1, use_bias=top.fc_bias, name="classifier_conv")(x)
            x = self.bn(x, "classifier_bn")
            x = L.Flatten(name="flatten")(x)
            return L.Activation(classifier_activation or "linear", name="predictions")(x)
        else:
            raise ModelConfigError(f"top kind {top.kind!r} is unknown; use pool_fc, pool_conv_fc, pool_conv_bn or "
                                   "vgg.")
        return L.Dense(classes, activation=classifier_activation, use_bias=top.fc_bias, name="predictions")(x)


def block_prefixes(spec):
    """Layer-name prefix of every block of ``spec``, in order: ``stage{s}_block{j}``.

    ``s`` is log2 of the block's output stride (the stride-2 stem is ``stage1_block0``,
    VGG16's stride-1 convs are stage 0) and ``j`` counts blocks within the stage from 0,
    so adding a block renames nothing outside its stage. Every layer of a block is named
    prefix + a fixed suffix (``_conv``, ``_bn``, ``_expand_conv``, ``_project_bn`` ...).
    """
    prefixes, counts = [], {}
    for stage in spec.block_stages():
        j = counts.get(stage, 0)
        counts[stage] = j + 1
        prefixes.append(f"stage{stage}_block{j}")
    return prefixes


def feature_levels(spec):
    """The ``out_indices`` ``spec`` offers: level -> reduction (0 -> 2, ... 4 -> 32)."""
    return {level: 2 ** (level + 1) for level in sorted(spec.feature_blocks())}


def check_out_indices(spec, out_indices):
    """Validated ``out_indices`` as a tuple of ints; ModelConfigError names a bad value."""
    levels = feature_levels(spec)
    valid = f"valid levels are {sorted(levels)} (reductions {sorted(levels.values())})"
    if isinstance(out_indices, (str, bytes)) or not hasattr(out_indices, "__iter__"):
        raise ModelConfigError(f"out_indices={out_indices!r} must be a sequence of ints; {valid}.")
    out_indices = tuple(out_indices)
    if not out_indices:
        raise ModelConfigError(f"out_indices=() is empty; pass at least one level, {valid}.")
    for i in out_indices:
        if isinstance(i, bool) or not isinstance(i, int):
            raise ModelConfigError(f"out_indices value {i!r} is not an int; {valid}.")
        if i not in levels:
            raise ModelConfigError(f"out_indices value {i} is out of range for {spec.name}; {valid}.")
    if len(set(out_indices)) != len(out_indices):
        dup = next(i for i in out_indices if out_indices.count(i) > 1)
        raise ModelConfigError(f"out_indices={out_indices!r} lists level {dup} twice; list each level once.")
    return out_indices


def build_model(spec, inputs, include_top=True, classes=1000, pooling=None,
                classifier_activation="softmax", options=None, out_indices=None):
    """Build ``spec`` on the Keras tensor ``inputs`` and return a functional model.

    Without the top, the output is the last feature map, globally pooled when
    ``pooling`` is ``"avg"`` or ``"max"``. With ``out_indices`` (feature levels, see
    :func:`feature_levels`) the model has one output per level instead, the output of the
    last non-head block of that stride, and no top. Models of the torch convention are
    named ``<spec name>_torch``.
    """
    options = options or BuildOptions()
    graph = _Graph(options)
    ends = {}
    last = len(spec.blocks) - 1
    if out_indices is not None:
        out_indices = check_out_indices(spec, out_indices)
        levels = spec.feature_blocks()
        ends = {levels[i]: i for i in out_indices}
        last = max(ends)
    heads = spec.head_flags()
    features = {}
    x = inputs
    for i, (block, prefix) in enumerate(zip(spec.blocks, block_prefixes(spec))):
        if i > last:
            break
        if ends and heads[i]:
            continue
        emit = getattr(graph, f"block_{block.kind}", None)
        if emit is None:
            raise ModelConfigError(f"block kind {block.kind!r} of {spec.name} is unknown.")
        x = emit(x, block, prefix)
        graph.prev_block = block
        if i in ends:
            features[ends[i]] = x
    name = spec.name if options.convention == "tf" else f"{spec.name}_{options.convention}"
    if ends:
        return keras.Model(inputs, [features[i] for i in out_indices], name=name)
    if include_top:
        x = graph.top(x, spec.top, classes, classifier_activation)
    elif pooling == "avg":
        x = L.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = L.GlobalMaxPooling2D(name="max_pool")(x)
    return keras.Model(inputs, x, name=name)


def _check_model(model, what):
    if not isinstance(model, keras.Model):
        raise ModelConfigError(f"{what}() needs a Keras model, got {type(model).__name__}; pass a model from "
                               "kerasnets.get_model.")


_STAGE_LAYER = re.compile(r"^(?:quant_)?stage(\d+)_block\d+_")


def model_convention(model):
    """The numeric convention, ``"tf"`` or ``"torch"``, that ``model`` was built in.

    Read from the graph itself, so it survives ``.keras`` / HDF5 save and load,
    :func:`kerasnets.deploy`, tfmot wrapping and sub-models: a torch-convention model has
    an explicit ``ZeroPadding2D`` (named ``..._pad``) before every strided window. VGG16,
    the one family without a strided padded window (the same function in both), is
    recognised by the ``_torch`` suffix the builder gives every torch-convention model name.
    """
    _check_model(model, "model_convention")
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)  # tfmot's QuantizeWrapper keeps the layer in .layer
        if isinstance(inner, L.ZeroPadding2D) and inner.name.endswith("_pad"):
            return "torch"
    return "torch" if re.search(r"_torch(_|$)", model.name) else "tf"


def feature_info(model):
    """Feature endpoints of a ``features_only`` model, one dict per output, in order.

    Each dict has ``index`` (the ``out_indices`` level), ``channels``, ``reduction``
    (input size / feature size: 2 ** (index + 1)) and ``layer`` (the output layer's name).
    Read from the stage-based layer names, so it holds after save/load and deploy().
    """
    _check_model(model, "feature_info")
    info = []
    for layer_name, tensor in zip(model.output_names, model.outputs):
        match = _STAGE_LAYER.match(layer_name)
        if match is None or len(tensor.shape) != 4 or int(match.group(1)) < 1:
            raise ModelConfigError(f"output {layer_name!r} of {model.name} is not a block's feature map; "
                                   "build the model with features_only=True.")
        stage = int(match.group(1))
        info.append({"index": stage - 1, "channels": int(tensor.shape[-1]), "reduction": 2 ** stage,
                     "layer": layer_name})
    return info

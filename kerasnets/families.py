"""Architecture specs of every family, as compact stage tables.

Each ``*_spec`` function returns a :class:`kerasnets.spec.ModelSpec`. Channel rules and
tables follow the reference implementations whose parameter and MAC counts the tests
check (timm 1.0.31 / torchvision for most families, Megvii's official ShuffleNet-Series
code for ShuffleNet V1); the source of each table is named beside it.
"""
import dataclasses
import math

from kerasnets.errors import ModelConfigError
from kerasnets.spec import Block, ModelSpec, Top, align_up, make_divisible


def _div4(v):
    return make_divisible(v, 4)


# ---------------------------------------------------------------- MobileNetV2 ----
# (expand t, channels c, repeats n, stride s), Sandler et al. 2018, Table 2.
MOBILENET_V2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def mobilenet_v2_spec(width=1.0, name=None, stages=MOBILENET_V2_STAGES):
    """MobileNetV2 (timm/torchvision channel rule: make_divisible(c * width, 8))."""
    if width <= 0:
        raise ModelConfigError(f"MobileNetV2 width={width!r} must be positive.")
    ch = lambda c: make_divisible(c * width, 8)  # noqa: E731
    stem = ch(32)
    blocks = [Block("conv", stem, 3, 2, act="relu6")]
    cin = stem
    for t, c, n, s in stages:
        for i in range(n):
            out = ch(c)
            stride = s if i == 0 else 1
            if t == 1:
                blocks.append(Block("ds", out, 3, stride, act="relu6"))
            else:
                blocks.append(Block("ir", out, 3, stride, mid=make_divisible(cin * t, 8), act="relu6"))
            cin = out
    blocks.append(Block("conv", max(1280, ch(1280)), 1, 1, act="relu6", head=True))
    return ModelSpec(name or f"mobilenet_v2_{round(width * 100):03d}", tuple(blocks), Top("pool_fc", dropout=0.2))


# -------------------------------------------------------------------- AXSpine ----
AXSPINE_VARIANTS = {
    # depths per stage (ConvNeXt 3:3:9:3 and a 2:2:6:2 reduction), width multiplier
    "small": ((2, 2, 6, 2), 1.0),
    "middle": ((3, 3, 9, 3), 1.0),
    "big": ((3, 3, 9, 3), 1.4),
}


def axspine_spec(variant="middle", channels_per_group=8, alignment=16, expand=4, second_expand=2,
                 depths=None, width=None, name=None):
    """AXSpine: MobileNetV2 re-tailored for an M55H-class NPU, derived from its spec.

    The five changes of Axera's article, applied block by block to the spec that
    :func:`mobilenet_v2_spec` builds at the same ``width`` (from :data:`MOBILENET_V2_STAGES`):

    1. every depthwise conv becomes a group conv with ``channels_per_group`` input
       channels per group. Default 8: the group width of Horizon's VarGNet and of
       RegNetX-200MF, and one full lane of an 8-wide int8 MAC vector, the value these
       NPUs run group convs fastest at;
    2. the second layer (MobileNetV2's expand-1 depthwise-separable block) becomes one
       plain 3x3 conv;
    3. every channel count is rounded up to ``alignment`` (default 16: MobileNetV2's
       channels are already multiples of 8, so 16 is the smallest alignment for which
       the change does anything, and the channel parallelism of this NPU class);
    4. expand ratio 6 -> ``expand`` (4), and the first inverted-residual stage's ->
       ``second_expand`` (2);
    5. the five resolution stages (/2 ... /32) are re-laid out as four stages
       (/4, /8, /16, /32) with depths in ConvNeXt's 3:3:9:3 proportion; each stage takes
       the width MobileNetV2 uses where it enters that resolution (24, 32, 64, 160), and
       MobileNetV2's single 320-wide last block is folded into the 1x1 head conv.

    Variants: Small uses depths 2:2:6:2 at width 1.0, Middle 3:3:9:3 at width 1.0, Big
    3:3:9:3 at width 1.4 (channels scaled by MobileNetV2's rule, then aligned).
    """
    if variant not in AXSPINE_VARIANTS:
        raise ModelConfigError(f"AXSpine variant {variant!r} is unknown; use one of {sorted(AXSPINE_VARIANTS)}.")
    default_depths, default_width = AXSPINE_VARIANTS[variant]
    depths = tuple(depths or default_depths)
    width = default_width if width is None else width
    for label, value in (("channels_per_group", channels_per_group), ("alignment", alignment)):
        if int(value) != value or value < 1:
            raise ModelConfigError(f"AXSpine {label}={value!r} must be a positive integer.")
    if alignment % channels_per_group and channels_per_group % alignment:
        raise ModelConfigError(f"AXSpine alignment {alignment} and channels_per_group {channels_per_group} "
                               "must divide one another so every aligned width splits into whole groups.")
    if len(depths) != 4 or any(int(d) != d or d < 1 for d in depths):
        raise ModelConfigError(f"AXSpine depths={depths!r} must be four positive integers "
                               "(the blocks at /4, /8, /16 and /32).")
    unit = max(alignment, channels_per_group)
    align = lambda c: align_up(c, unit)  # noqa: E731  (change 3, applied to every width)
    stem, second, *body, head = mobilenet_v2_spec(width).blocks
    blocks = [dataclasses.replace(stem, out=align(stem.out)),
              Block("conv", align(second.out), 3, 1, act=second.act)]  # change 2: ds block -> plain 3x3
    # Change 5: MobileNetV2's stride-2 blocks give the width where it enters /4, /8, /16, /32;
    # its stride-1 stages (96 and 320 wide) disappear, the 320 one folded into the head conv.
    entries = [b for b in body if b.stride == 2]
    cin = blocks[-1].out
    for stage, (entry, depth) in enumerate(zip(entries, depths)):
        t = second_expand if stage == 0 else expand  # change 4
        for i in range(depth):
            out = align(entry.out)
            blocks.append(Block("ir", out, entry.kernel, 2 if i == 0 else 1, mid=align(cin * t),
                                group_width=channels_per_group, act=entry.act))  # change 1
            cin = out
    blocks.append(dataclasses.replace(head, out=align(head.out)))
    return ModelSpec(name or f"axspine_{variant}", tuple(blocks), Top("pool_fc", dropout=0.2))


# --------------------------------------------------------------- ShuffleNet V1 ----
# Output channels of stages 2-4 at width 1.0 per group count (Zhang et al. 2017, Table 1).
SHUFFLENET_V1_WIDTHS = {1: (144, 288, 576), 2: (200, 400, 800), 3: (240, 480, 960),
                        4: (272, 544, 1088), 8: (384, 768, 1536)}
# Megvii ShuffleNet-Series (ShuffleNetV1/network.py): stem width per (groups, width).
_SHUFFLENET_V1_STEM = {(3, 0.5): 12, (8, 0.5): 16}


def shufflenet_v1_spec(groups=3, width=1.0, name=None, repeats=(4, 8, 4)):
    """ShuffleNet V1 as in Megvii's official code (shuffle after the depthwise conv).

    Stage widths are the paper's width-1.0 table times ``width``, rounded to a multiple
    of 4 * groups (so the bottleneck, a quarter of the width, splits into whole groups);
    for g = 3 and 8 at 0.5/1.0/1.5/2.0 this reproduces Megvii's tables exactly. The stem
    is 24 wide (48 from width 2.0; 12 / 16 at width 0.5 for g = 3 / 8, as in Megvii's code).
    """
    if groups not in SHUFFLENET_V1_WIDTHS:
        raise ModelConfigError(f"ShuffleNet V1 groups={groups!r} has no published width table; "
                               f"use one of {sorted(SHUFFLENET_V1_WIDTHS)}.")
    if width <= 0:
        raise ModelConfigError(f"ShuffleNet V1 width={width!r} must be positive.")
    unit = 4 * groups
    widths = [max(unit, int(round(c * width / unit)) * unit) for c in SHUFFLENET_V1_WIDTHS[groups]]
    stem = _SHUFFLENET_V1_STEM.get((groups, width), 48 if width >= 2.0 else 24)
    blocks = [Block("conv", stem, 3, 2, act="relu"), Block("maxpool", stem, 3, 2)]
    for stage, (c, n) in enumerate(zip(widths, repeats)):
        for i in range(n):
            blocks.append(Block("shuffle_v1", c, 3, 2 if i == 0 else 1, mid=c // 4, groups=groups,
                                first_group_dense=(stage == 0 and i == 0), act="relu"))
    tag = f"{width:.1f}".replace(".", "_")
    return ModelSpec(name or f"shufflenet_v1_g{groups}_x{tag}", tuple(blocks),
                     Top("pool_fc", dropout=0.0, fc_bias=False))


# --------------------------------------------------------------- ShuffleNet V2 ----
# (stage widths, conv5 width) per multiplier, Ma et al. 2018, Table 5 / torchvision.
SHUFFLENET_V2_WIDTHS = {0.5: ((48, 96, 192), 1024), 1.0: ((116, 232, 464), 1024),
                        1.5: ((176, 352, 704), 1024), 2.0: ((244, 488, 976), 2048)}


def shufflenet_v2_spec(width=1.0, name=None, repeats=(4, 8, 4)):
    """ShuffleNet V2 (torchvision structure). Only the published multipliers exist."""
    if width not in SHUFFLENET_V2_WIDTHS:
        raise ModelConfigError(f"ShuffleNet V2 width={width!r} has no published table; "
                               f"use one of {sorted(SHUFFLENET_V2_WIDTHS)}.")
    widths, last = SHUFFLENET_V2_WIDTHS[width]
    blocks = [Block("conv", 24, 3, 2, act="relu"), Block("maxpool", 24, 3, 2)]
    for c, n in zip(widths, repeats):
        for i in range(n):
            blocks.append(Block("shuffle_v2", c, 3, 2 if i == 0 else 1, act="relu"))
    blocks.append(Block("conv", last, 1, 1, act="relu", head=True))
    tag = f"{width:.1f}".replace(".", "_")
    return ModelSpec(name or f"shufflenet_v2_x{tag}", tuple(blocks), Top("pool_fc", dropout=0.0))


# ---------------------------------------------------------- GhostNet / RepGhost ----
# (kernel, mid, out, se ratio, stride) per block, grouped by stage (timm ghostnet.py).
GHOSTNET_CFG = (((3, 16, 16, 0, 1),), ((3, 48, 24, 0, 2),), ((3, 72, 24, 0, 1),),
                ((5, 72, 40, 0.25, 2),), ((5, 120, 40, 0.25, 1),), ((3, 240, 80, 0, 2),),
                ((3, 200, 80, 0, 1), (3, 184, 80, 0, 1), (3, 184, 80, 0, 1),
                 (3, 480, 112, 0.25, 1), (3, 672, 112, 0.25, 1)),
                ((5, 672, 160, 0.25, 2),),
                ((5, 960, 160, 0, 1), (5, 960, 160, 0.25, 1), (5, 960, 160, 0, 1),
                 (5, 960, 160, 0.25, 1)))
# RepGhostNet: same layout with about half the mid widths (timm repghost.py).
REPGHOST_CFG = (((3, 8, 16, 0, 1),), ((3, 24, 24, 0, 2),), ((3, 36, 24, 0, 1),),
                ((5, 36, 40, 0.25, 2),), ((5, 60, 40, 0.25, 1),), ((3, 120, 80, 0, 2),),
                ((3, 100, 80, 0, 1), (3, 120, 80, 0, 1), (3, 120, 80, 0, 1),
                 (3, 240, 112, 0.25, 1), (3, 336, 112, 0.25, 1)),
                ((5, 336, 160, 0.25, 2),),
                ((5, 480, 160, 0, 1), (5, 480, 160, 0.25, 1), (5, 480, 160, 0, 1),
                 (5, 480, 160, 0.25, 1)))


def _ghost_family_spec(kind, cfg, width, head_mult, name):
    if width <= 0:
        raise ModelConfigError(f"{kind} width={width!r} must be positive.")
    stem = _div4(16 * width)
    blocks = [Block("conv", stem, 3, 2, act="relu")]
    mid = 0
    for stage in cfg:
        for k, t, c, se, s in stage:
            mid = _div4(t * width)
            blocks.append(Block(kind, _div4(c * width), k, s, mid=mid, se=se,
                                se_channels=_div4(mid * se) if se else 0, act="relu"))
    blocks.append(Block("conv", _div4(cfg[-1][-1][1] * width * head_mult), 1, 1, act="relu", head=True))
    return ModelSpec(name, tuple(blocks), Top("pool_conv_fc", channels=1280, act="relu", dropout=0.2))


def ghostnet_spec(width=1.0, name=None):
    """GhostNet (timm ghostnet.py): Ghost bottlenecks, SE with hard-sigmoid gate, pooled 1x1 head."""
    return _ghost_family_spec("ghost", GHOSTNET_CFG, width, 1, name or f"ghostnet_{round(width * 100):03d}")


def repghostnet_spec(width=1.0, name=None):
    """RepGhostNet (timm repghost.py), train form: re-parameterizable RepGhost modules."""
    return _ghost_family_spec("repghost", REPGHOST_CFG, width, 2, name or f"repghostnet_{round(width * 100):03d}")


# -------------------------------------------------------- EfficientNet-EdgeTPU ----
# (kind, repeats, kernel, stride, expand, channels), Google's efficientnet_edgetpu builder.
EFFICIENTNET_EDGETPU_STAGES = (("er", 1, 3, 1, 4, 24), ("er", 2, 3, 2, 8, 32), ("er", 4, 3, 2, 8, 48),
                               ("ir", 5, 5, 2, 8, 96), ("ir", 4, 5, 1, 8, 144), ("ir", 2, 5, 2, 8, 192))
EFFICIENTNET_EDGETPU_VARIANTS = {"s": (1.0, 1.0, 224, 0.2), "m": (1.0, 1.1, 240, 0.2), "l": (1.2, 1.4, 300, 0.3)}


def efficientnet_edgetpu_spec(variant="s", name=None):
    """EfficientNet-EdgeTPU S/M/L: fused (full kxk) convs in the first three stages, ReLU, no SE.

    The first block sizes its expansion from 24 (scaled) instead of the stem width and has
    no skip, a quirk of the TF reference kept by timm.
    """
    if variant not in EFFICIENTNET_EDGETPU_VARIANTS:
        raise ModelConfigError(f"EfficientNet-EdgeTPU variant {variant!r} is unknown; use s, m or l.")
    width, depth, size, dropout = EFFICIENTNET_EDGETPU_VARIANTS[variant]
    ch = lambda c: make_divisible(c * width, 8)  # noqa: E731
    stem = ch(32)
    blocks = [Block("conv", stem, 3, 2, act="relu")]
    cin = stem
    for stage, (kind, r, k, s, e, c) in enumerate(EFFICIENTNET_EDGETPU_STAGES):
        for i in range(int(math.ceil(r * depth))):
            out = ch(c)
            base = ch(24) if stage == 0 and i == 0 else cin
            blocks.append(Block(kind, out, k, s if i == 0 else 1, mid=make_divisible(base * e, 8),
                                act="relu", skip=not (stage == 0 and i == 0)))
            cin = out
    blocks.append(Block("conv", ch(1280), 1, 1, act="relu", head=True))
    return ModelSpec(name or f"efficientnet_edgetpu_{variant}", tuple(blocks), Top("pool_fc", dropout=dropout),
                     default_size=(size, size))


# ---------------------------------------------------------------- MobileNetV3 ----
# (kind, kernel, stride, expand, channels, se, activation), Howard et al. 2019, Tables 1-2.
MOBILENET_V3_LARGE = (("ds", 3, 1, 1, 16, 0, "relu"),
                      ("ir", 3, 2, 4, 24, 0, "relu"), ("ir", 3, 1, 3, 24, 0, "relu"),
                      ("ir", 5, 2, 3, 40, .25, "relu"), ("ir", 5, 1, 3, 40, .25, "relu"),
                      ("ir", 5, 1, 3, 40, .25, "relu"),
                      ("ir", 3, 2, 6, 80, 0, "hard_swish"), ("ir", 3, 1, 2.5, 80, 0, "hard_swish"),
                      ("ir", 3, 1, 2.3, 80, 0, "hard_swish"), ("ir", 3, 1, 2.3, 80, 0, "hard_swish"),
                      ("ir", 3, 1, 6, 112, .25, "hard_swish"), ("ir", 3, 1, 6, 112, .25, "hard_swish"),
                      ("ir", 5, 2, 6, 160, .25, "hard_swish"), ("ir", 5, 1, 6, 160, .25, "hard_swish"),
                      ("ir", 5, 1, 6, 160, .25, "hard_swish"),
                      ("conv", 1, 1, 0, 960, 0, "hard_swish"))
MOBILENET_V3_SMALL = (("ds", 3, 2, 1, 16, .25, "relu"),
                      ("ir", 3, 2, 4.5, 24, 0, "relu"), ("ir", 3, 1, 3.67, 24, 0, "relu"),
                      ("ir", 5, 2, 4, 40, .25, "hard_swish"), ("ir", 5, 1, 6, 40, .25, "hard_swish"),
                      ("ir", 5, 1, 6, 40, .25, "hard_swish"),
                      ("ir", 5, 1, 3, 48, .25, "hard_swish"), ("ir", 5, 1, 3, 48, .25, "hard_swish"),
                      ("ir", 5, 2, 6, 96, .25, "hard_swish"), ("ir", 5, 1, 6, 96, .25, "hard_swish"),
                      ("ir", 5, 1, 6, 96, .25, "hard_swish"),
                      ("conv", 1, 1, 0, 576, 0, "hard_swish"))


def mobilenet_v3_spec(size="large", width=1.0, name=None):
    """MobileNetV3 Large/Small (timm): hard-swish, SE with hard-sigmoid gate after the depthwise conv."""
    table = {"large": (MOBILENET_V3_LARGE, 1280), "small": (MOBILENET_V3_SMALL, 1024)}.get(size)
    if table is None:
        raise ModelConfigError(f"MobileNetV3 size {size!r} is unknown; use large or small.")
    rows, head = table
    ch = lambda c: make_divisible(c * width, 8)  # noqa: E731
    blocks = [Block("conv", 16, 3, 2, act="hard_swish")]
    cin = 16
    for kind, k, s, e, c, se, act in rows:
        out = ch(c)
        mid = make_divisible(cin * e, 8) if kind == "ir" else cin
        blocks.append(Block(kind, out, k, s, mid=mid if kind == "ir" else 0, se=se,
                            se_channels=make_divisible(mid * se, 8) if se else 0, act=act,
                            head=kind == "conv"))  # the 960 / 576 1x1 conv
        cin = out
    return ModelSpec(name or f"mobilenet_v3_{size}_{round(width * 100):03d}", tuple(blocks),
                     Top("pool_conv_fc", channels=head, act="hard_swish", dropout=0.2))


# ------------------------------------------------------------------- RegNetX ----
# (widths, depths, group width), Radosavovic et al. 2020 via timm regnet.py model_cfgs.
REGNETX_CFG = {"002": ((24, 56, 152, 368), (1, 1, 4, 7), 8),
               "004": ((32, 64, 160, 384), (1, 2, 7, 12), 16)}


def regnetx_spec(flops="002", name=None):
    """RegNetX (timm): X blocks of 1x1 -> 3x3 group conv of fixed group width -> 1x1, no depthwise."""
    if flops not in REGNETX_CFG:
        raise ModelConfigError(f"RegNetX {flops!r} is unknown; use one of {sorted(REGNETX_CFG)}.")
    widths, depths, gw = REGNETX_CFG[flops]
    blocks = [Block("conv", 32, 3, 2, act="relu")]
    for w, d in zip(widths, depths):
        for i in range(d):
            blocks.append(Block("regnet_x", w, 3, 2 if i == 0 else 1, mid=w, group_width=gw, act="relu"))
    return ModelSpec(name or f"regnetx_{flops}", tuple(blocks), Top("pool_fc", dropout=0.0))


# ---------------------------------------------------------------------- VGG16 ----
VGG16_CFG = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


def vgg16_spec(name=None):
    """VGG16 (configuration D, no BN; torchvision): 13 3x3 convs with bias, 5 max-pools, 3 FC."""
    blocks = []
    for stage in VGG16_CFG:
        for i, c in enumerate(stage):
            blocks.append(Block("vgg_conv", c, 3, 2 if i == len(stage) - 1 else 1, bias=True))
    return ModelSpec(name or "vgg16", tuple(blocks), Top("vgg", channels=4096, dropout=0.5))


# ---------------------------------------------------------------------- ResNet ----
# Bottleneck blocks per stage (He et al. 2016, Table 1); stage widths 64..512, outputs 4x.
RESNET_DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
RESNET_WIDTHS = (64, 128, 256, 512)


def resnet_spec(depth=50, version=1, name=None):
    """ResNet with bottleneck blocks, as Keras Applications builds it (``ResNet50``, ``ResNet152V2``...).

    V1 (He et al., "Deep Residual Learning", 2016): post-activation blocks, the stride in a
    stage's first block (in its first 1x1), biases on every conv. V2 ("Identity Mappings",
    2016): pre-activation blocks, the stride in the 3x3 of a stage's last block (stages 2-4),
    a BN-free stem and a final BN + ReLU.
    """
    if depth not in RESNET_DEPTHS:
        raise ModelConfigError(f"ResNet depth={depth!r} is not built; use one of {sorted(RESNET_DEPTHS)}.")
    if version not in (1, 2):
        raise ModelConfigError(f"ResNet version={version!r} is unknown; use 1 or 2.")
    if version == 1:
        blocks = [Block("conv", 64, 7, 2, bias=True), Block("maxpool", 64, 3, 2)]
    else:
        blocks = [Block("conv", 64, 7, 2, act=None, bias=True, norm=False), Block("maxpool", 64, 3, 2, act=None)]
    stages = len(RESNET_WIDTHS)
    for s, (width, n) in enumerate(zip(RESNET_WIDTHS, RESNET_DEPTHS[depth])):
        for i in range(n):
            if version == 1:
                stride = 2 if i == 0 and s > 0 else 1
                blocks.append(Block("bottleneck", 4 * width, 3, stride, mid=width, bias=True))
            else:
                stride = 2 if i == n - 1 and s < stages - 1 else 1
                blocks.append(Block("preact_bottleneck", 4 * width, 3, stride, mid=width))
    if version == 2:
        blocks.append(Block("norm_act", 4 * RESNET_WIDTHS[-1], act="relu"))
    suffix = "" if version == 1 else "_v2"
    return ModelSpec(name or f"resnet{depth}{suffix}", tuple(blocks), Top("pool_fc", dropout=0.0))


# --------------------------------------------------- VarGNet family (Horizon Robotics) ----
# Written from the project's VarGNet facts digest (Horizon's HAT vargnetv2.py / mixvargenet.py and
# their block modules, as read there). No public implementation runs here: the tests check the
# parameter and MAC counts the digest computes from these rules, and the seven MAC figures of
# Horizon's MixVarGENet ImageNet-128 experiment config (the only published counts).

def _check_positive(family, label, value, integer=False):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    if not ok or (integer and int(value) != value):
        kind = "positive integer" if integer else "positive number"
        raise ModelConfigError(f"{family} {label}={value!r} must be a {kind}.")


def _check_repeats(family, repeats, stages):
    if isinstance(repeats, (str, bytes)) or not hasattr(repeats, "__iter__") or len(tuple(repeats)) != stages \
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in repeats):
        raise ModelConfigError(f"{family} repeats={repeats!r} must be {stages} positive integers (blocks per "
                               "stage).")
    return tuple(repeats)


def _check_grouped_width(family, alpha, group_base, width):
    if width < group_base or width % group_base:
        raise ModelConfigError(f"{family} alpha={alpha!r} gives a {width}-channel layer, not a multiple of "
                               f"group_base {group_base}; pick an alpha (e.g. a multiple of 0.25) or a group_base "
                               "that divides every grouped conv's input width.")


# Stem, mod2 .. mod5 widths at alpha 1 and blocks per stage (digest §3.2).
VARGNETV2_CHANNELS = (32, 32, 64, 128, 256)
VARGNETV2_REPEATS = (1, 3, 7, 4)
TINYVARGNETV2_REPEATS = (1, 3, 4, 2)


def vargnetv2_spec(alpha=1.0, group_base=8, factor=2, head_factor=1, repeats=VARGNETV2_REPEATS, tiny=False,
                   bias=True, name=None):
    """Horizon Robotics' VargNetV2 (``tiny=True``: TinyVargNetV2), from the project's VarGNet digest.

    Variable group convolution: every kxk conv is grouped with a fixed ``group_base`` input
    channels per group (groups = C / group_base) and widens each group by ``factor``; a dense 1x1
    conv follows (an SGC). Layout: a 3x3 stride-2 stem (conv with bias, BN; ReLU only in the Tiny
    variant), four stages of ``varg`` blocks (``repeats`` = blocks per stage, VargNetV2 1/3/7/4,
    Tiny 1/3/4/2; each stage's first block strides 2, and from the second stage on has a merged
    second branch), a 1x1 conv to max(int(1024 alpha), 1024) with BN and ReLU (the head), and a 1x1
    conv + BN classifier (:class:`kerasnets.spec.Top` ``pool_conv_bn``).

    Args:
      alpha: width multiplier, applied as ``int(c * alpha)`` to 32, 32, 64, 128, 256 (HAT's rule,
        no rounding); every width must be a multiple of ``group_base``.
      group_base: input channels per group of every grouped conv (8 in HAT).
      factor: widening of the grouped convs in stages 3-5 (2 in HAT); ``group_base * factor``
        must be whole.
      head_factor: 1 -> the first stage's factor is ``8 // group_base`` (1 at 8), 2 -> 2 (needed
        from group_base 16 on).
      repeats: four block counts.
      bias: biases on the convs (HAT's default True; BN follows every conv anyway).

    No published parameter or MAC figure exists; the registry's reference counts are computed
    from the digest (VargNetV2 alpha 1: 3.661 M Keras parameters, 360.2 M MACs at 224).
    """
    family = "TinyVargNetV2" if tiny else "VargNetV2"
    _check_positive(family, "alpha", alpha)
    _check_positive(family, "group_base", group_base, integer=True)
    _check_positive(family, "factor", factor)
    if head_factor not in (1, 2):
        raise ModelConfigError(f"{family} head_factor={head_factor!r} is unknown; use 1 or 2.")
    repeats = _check_repeats(family, repeats, 4)
    first_factor = 2 if head_factor == 2 else 8 // group_base
    if first_factor == 0:
        raise ModelConfigError(f"{family} head_factor=1 with group_base={group_base} gives the first stage a "
                               f"factor of 8 // {group_base} = 0; pass head_factor=2.")
    if group_base * factor != int(group_base * factor):
        raise ModelConfigError(f"{family} factor={factor!r} widens each group of {group_base} channels to "
                               f"{group_base * factor:g}; pick a factor that makes it whole (e.g. 1, 1.5, 2).")
    widths = [int(c * alpha) for c in VARGNETV2_CHANNELS]
    for w in widths:
        _check_grouped_width(family, alpha, group_base, w)
    blocks = [Block("conv", widths[0], 3, 2, act="relu" if tiny else None, bias=bias)]
    for stage, (out, n) in enumerate(zip(widths[1:], repeats)):
        f = float(first_factor if stage == 0 else factor)
        for i in range(n):
            blocks.append(Block("varg", out, 3, 2 if i == 0 else 1, group_width=group_base, factor=f,
                                merge=(i == 0 and stage > 0), bias=bias, act="relu"))
    blocks.append(Block("conv", max(int(1024 * alpha), 1024), 1, 1, act="relu", bias=bias, head=True))
    default = f"{'tiny' if tiny else ''}vargnetv2_{round(alpha * 100):03d}"
    return ModelSpec(name or default, tuple(blocks), Top("pool_conv_bn", dropout=0.0, fc_bias=bias))


def tinyvargnetv2_spec(alpha=1.0, group_base=8, factor=2, head_factor=1, repeats=TINYVARGNETV2_REPEATS,
                       bias=True, name=None):
    """TinyVargNetV2: :func:`vargnetv2_spec` with ``tiny=True`` (ReLU after the stem, 1/3/4/2 blocks)."""
    return vargnetv2_spec(alpha, group_base, factor, head_factor, repeats, tiny=True, bias=bias, name=name)


# HAT's BLOCK_CONFIG (digest §4.1): op -> (conv2 kernel, factor, conv1 grouped, conv2 grouped,
# forced 1x1 shortcut). Grouped convs have group_base channels per group (16, the "gb16" of the
# key): conv1 counted on its input, conv2 on its output. conv1 is always 3x3; not grouped = dense.
MIXVARGE_OPS = {
    "mixvarge_f1": (1, 1, False, False, False), "mixvarge_f2": (1, 2, False, False, False),
    "mixvarge_f4": (1, 4, False, False, False),
    "mixvarge_f1_gb16": (1, 1, True, False, False), "mixvarge_f2_gb16": (1, 2, True, False, False),
    "mixvarge_f4_gb16": (1, 4, True, False, False),
    "mixvarge_f2_r": (1, 2, False, False, True), "mixvarge_f2_r_gb16": (1, 2, True, False, True),
    "mixvarge_k3k3_f2": (3, 2, False, False, False), "mixvarge_k3k3_f2_gb16": (3, 2, True, True, False),
}
_MIX_F2, _MIX_F4, _MIX_F1 = "mixvarge_f2", "mixvarge_f4", "mixvarge_f1"
_MIX_A, _MIX_B = (32, 32, 32, 64, 64, 96), (32, 32, 32, 32, 64, 96)
# variant -> (widths of the stem and mod2..mod6, op per stage, blocks per stage, input size).
# "imagenet": the published ImageNet layout (digest §4.4, the mixvargenet_imagenet pretrain);
# "cls6_v1".."cls6_v7": the ImageNet-128 experiment variants of HAT's mixvargenet_cls_id6 (§4.5).
MIXVARGENET_VARIANTS = {
    "imagenet": ((32, 32, 32, 64, 96, 160), (_MIX_F2, _MIX_F4, _MIX_F4, "mixvarge_f2_gb16", "mixvarge_f2_gb16"),
                 (1, 3, 3, 7, 3), 224),
    "cls6_v1": (_MIX_A, (_MIX_F2, _MIX_F4, _MIX_F4, _MIX_F2, _MIX_F2), (1, 3, 3, 7, 3), 128),
    "cls6_v2": (_MIX_A, (_MIX_F2, _MIX_F4, _MIX_F4, _MIX_F2, _MIX_F2), (1, 2, 3, 5, 3), 128),
    "cls6_v3": (_MIX_B, (_MIX_F2, _MIX_F4, _MIX_F4, _MIX_F2, _MIX_F2), (1, 3, 3, 7, 3), 128),
    "cls6_v4": (_MIX_B, (_MIX_F2, _MIX_F4, _MIX_F4, _MIX_F2, _MIX_F2), (1, 2, 3, 5, 3), 128),
    "cls6_v5": (_MIX_A, (_MIX_F2, _MIX_F2, _MIX_F2, _MIX_F1, _MIX_F2), (1, 3, 3, 7, 3), 128),
    "cls6_v6": (_MIX_B, (_MIX_F2, _MIX_F2, _MIX_F2, _MIX_F1, _MIX_F2), (1, 3, 3, 5, 3), 128),
    "cls6_v7": (_MIX_B, (_MIX_F1,) * 5, (1, 3, 3, 5, 3), 128),
}
MIXVARGENET_STRIDES = (1, 2, 2, 2, 2)  # mod2 .. mod6 (the stem strides 2)


def mixvargenet_spec(variant="imagenet", alpha=1.0, group_base=16, repeats=None, ops=None, bias=True,
                     head_channels=1024, name=None):
    """Horizon Robotics' MixVarGENet, from the project's VarGNet digest.

    A 3x3 stride-2 stem (conv, BN, no ReLU), five stages of ``mixvarge`` blocks (the first of
    mod2 at stride 1, of mod3..mod6 at stride 2; one op of :data:`MIXVARGE_OPS` per stage: dense
    3x3 convs widening by the op's factor early, 16-channels-per-group convs late), a 1x1 conv to
    ``head_channels`` with BN and ReLU (the head) and a 1x1 conv + BN classifier
    (:class:`kerasnets.spec.Top` ``pool_conv_bn``).

    Args:
      variant: ``"imagenet"`` (the published ImageNet layout, 224x224; reconstructed in the
        digest from the configs that load the ``mixvargenet_imagenet`` pretrain) or
        ``"cls6_v1"`` .. ``"cls6_v7"`` (HAT's ImageNet-128 experiment variants, 128x128).
      alpha: width multiplier ``int(c * alpha)`` on every stage width (a kerasnets addition for
        search; HAT's MixVarGENet has none); grouped convs need widths that divide by ``group_base``.
      group_base: channels per group of the grouped (``*_gb16``) ops (16 in HAT).
      repeats: blocks per stage (five counts, each >= 1), instead of the variant's.
      ops: one op key per stage (five keys of :data:`MIXVARGE_OPS`), instead of the variant's.
      bias: biases on the stem, block and head convs (HAT configs pass True; the 1x1 shortcuts
        always have one).
    """
    family = "MixVarGENet"
    if variant not in MIXVARGENET_VARIANTS:
        raise ModelConfigError(f"{family} variant {variant!r} is unknown; use one of "
                               f"{sorted(MIXVARGENET_VARIANTS)}.")
    channels, default_ops, default_repeats, size = MIXVARGENET_VARIANTS[variant]
    _check_positive(family, "alpha", alpha)
    _check_positive(family, "group_base", group_base, integer=True)
    _check_positive(family, "head_channels", head_channels, integer=True)
    repeats = _check_repeats(family, default_repeats if repeats is None else repeats, 5)
    ops = tuple(default_ops if ops is None else ops)
    if len(ops) != 5 or any(op not in MIXVARGE_OPS for op in ops):
        bad = next((op for op in ops if op not in MIXVARGE_OPS), ops)
        raise ModelConfigError(f"{family} ops={ops!r} must be five op keys (one per stage); {bad!r} is not one of "
                               f"{sorted(MIXVARGE_OPS)}.")
    widths = [int(c * alpha) for c in channels]
    if min(widths) < 1:
        raise ModelConfigError(f"{family} alpha={alpha!r} leaves a stage without channels; use a larger alpha.")
    blocks = [Block("conv", widths[0], 3, 2, act=None, bias=bias)]
    cin = widths[0]
    for out, op, n, stride in zip(widths[1:], ops, repeats, MIXVARGENET_STRIDES):
        kernel2, f, grouped1, grouped2, project = MIXVARGE_OPS[op]
        for i in range(n):
            if grouped1:
                _check_grouped_width(family, alpha, group_base, cin)
            mid = out if f == 1 else int(cin * f)
            if grouped2:
                _check_grouped_width(family, alpha, group_base, out)
                if mid % (out // group_base):
                    raise ModelConfigError(f"{family} op {op} on a {cin} -> {out} block: its second conv cannot "
                                           f"split {mid} channels into {out // group_base} groups; use another "
                                           "op or alpha for that stage.")
            blocks.append(Block("mixvarge", out, 3, stride if i == 0 else 1, mid=mid,
                                group_width=group_base if grouped1 else 0, kernel2=kernel2,
                                group_width2=group_base if grouped2 else 0, skip=not project, bias=bias,
                                act="relu"))
            cin = out
    blocks.append(Block("conv", head_channels, 1, 1, act="relu", bias=bias, head=True))
    tag = "" if variant == "imagenet" else f"_{variant}"
    return ModelSpec(name or f"mixvargenet{tag}_{round(alpha * 100):03d}", tuple(blocks),
                     Top("pool_conv_bn", dropout=0.0, fc_bias=bias), default_size=(size, size))

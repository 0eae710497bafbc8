"""Per-family key maps: checkpoint tensor names -> kerasnets layer names.

A key map is a list of :class:`Slot` s built from a model's spec: for every block of the
spec, its kerasnets layer prefix (``kerasnets.builder.block_prefixes``) is paired with the
name the reference implementation gives that block (timm's ``blocks.<stage>.<index>``,
torchvision's ``features.<i>`` / ``stage<k>.<i>``, Megvii's ``features.<i>``, Keras
Applications' ``block_<i>_...``), so matching is by name and never by tensor position. The
stage split of a timm table is recovered from the spec's blocks (a new stage at every stride
2, change of width or change of block kind), or from the family's own stage table.
"""
import dataclasses

from kerasnets import families
from kerasnets.builder import block_prefixes
from kerasnets.errors import CheckpointError

FAMILY_NAMES = {"mobilenet_v2": "MobileNetV2", "mobilenet_v3": "MobileNetV3", "shufflenet_v1": "ShuffleNet V1",
                "shufflenet_v2": "ShuffleNet V2", "ghostnet": "GhostNet", "repghostnet": "RepGhostNet",
                "efficientnet_edgetpu": "EfficientNet-EdgeTPU", "regnetx": "RegNetX", "vgg16": "VGG16",
                "axspine": "AXSpine"}
# (family, checkpoint style) -> what the user calls that checkpoint, for messages.
STYLE_NAMES = {"timm": "timm", "timm_deploy": "timm (re-parameterized / deploy form)",
               "torchvision": "torchvision", "megvii": "Megvii ShuffleNet-Series", "keras": "Keras Applications"}


@dataclasses.dataclass(frozen=True)
class Slot:
    """One Keras layer filled from one checkpoint entry.

    src: checkpoint key prefix (``blocks.1.0.conv_pw``; the tensors are ``src + ".weight"``
      ...), or the Keras Applications layer name for ``.h5`` sources.
    layer: the kerasnets layer name.
    kind: ``conv`` | ``bn`` | ``dense`` | ``dense_nchw`` (a Linear after a PyTorch NCHW
      flatten) | ``keras`` (same-layout Keras weights) | ``keras_logits`` (a 1x1 conv
      classifier into a Dense).
    part: ``body``, ``top`` (layers of the classifier top other than the last one, e.g.
      MobileNetV3's 1280 head conv) or ``classifier`` (the last, ``predictions``).
    """
    src: str
    layer: str
    kind: str
    part: str = "body"


def model_family(name):
    """Family key of a kerasnets model name (``mobilenet_v2_035_torch`` -> ``mobilenet_v2``), or None."""
    for family in sorted(FAMILY_NAMES, key=len, reverse=True):
        if name == family or name.startswith(family + "_"):
            return family
    return None


def structure_spec(name):
    """A spec with the block layout of the kerasnets model called ``name``.

    Used when a model is loaded without its spec (``load_weights(model, src)``): the key map
    needs the blocks' kinds, strides and stage split, which the family and variant in the
    name fix; widths (which overrides may change) come from the model's own layers.
    """
    family = model_family(name)
    base = name[:-len("_torch")] if name.endswith("_torch") else name
    rest = base[len(family or ""):].lstrip("_")
    if family == "mobilenet_v2":
        return families.mobilenet_v2_spec()
    if family == "mobilenet_v3":
        return families.mobilenet_v3_spec("small" if rest.startswith("small") else "large")
    if family == "efficientnet_edgetpu":
        variant = rest[:1]
        return families.efficientnet_edgetpu_spec(variant if variant in families.EFFICIENTNET_EDGETPU_VARIANTS
                                                  else "s")
    if family == "regnetx":
        flops = rest[:3]
        return families.regnetx_spec(flops if flops in families.REGNETX_CFG else "002")
    if family == "shufflenet_v1":
        return families.shufflenet_v1_spec()
    if family == "shufflenet_v2":
        return families.shufflenet_v2_spec()
    if family == "ghostnet":
        return families.ghostnet_spec()
    if family == "repghostnet":
        return families.repghostnet_spec()
    if family == "vgg16":
        return families.vgg16_spec()
    raise CheckpointError(f"model {name!r} is not of a family kerasnets imports checkpoints for "
                          f"({', '.join(FAMILY_NAMES[f] for f in FAMILY_NAMES if f != 'axspine')}); build one of those "
                          "with kerasnets.get_model(...).")


def guess_source(keys):
    """(family, style) a checkpoint's tensor names look like, or (None, None)."""
    keys = set(keys)
    has = lambda fragment: any(fragment in k for k in keys)  # noqa: E731
    if has(".fusion_bn."):
        return "repghostnet", "timm"
    if has("cheap_operation.bias"):
        return "repghostnet", "timm_deploy"
    if has(".cheap_operation.0."):
        return "ghostnet", "timm"
    if has("branch_main_1."):
        return "shufflenet_v1", "megvii"
    if has(".branch2.0.weight"):
        return "shufflenet_v2", "torchvision"
    if "stem.conv.weight" in keys and has("s1.b1."):
        return "regnetx", "timm"
    if has(".conv_exp."):
        return "efficientnet_edgetpu", "timm"
    if "conv_stem.weight" in keys:
        return ("mobilenet_v3", "timm") if "conv_head.bias" in keys else ("mobilenet_v2", "timm")
    if has(".conv.0.0.weight") and "features.0.0.weight" in keys:
        return "mobilenet_v2", "torchvision"
    if "classifier.6.weight" in keys and "features.0.weight" in keys:
        return "vgg16", "torchvision"
    if "bn_Conv1/gamma" in keys:
        return "mobilenet_v2", "keras"
    if "Conv/BatchNorm/gamma" in keys:
        return "mobilenet_v3", "keras"
    if "block1_conv1/kernel" in keys:
        return "vgg16", "keras"
    return None, None


def _conv_bn(src_conv, src_bn, layer):
    return [Slot(src_conv, f"{layer}_conv", "conv"), Slot(src_bn, f"{layer}_bn", "bn")]


def _se(src, p):
    return [Slot(f"{src}.se.conv_reduce", f"{p}_se_reduce", "conv"),
            Slot(f"{src}.se.conv_expand", f"{p}_se_expand", "conv")]


def _timm_stage_index(blocks):
    """(stage, index) of each block in a timm EfficientNet-builder table: a new stage starts at
    a stride-2 block, a change of output width or a change of block kind."""
    out, stage, index, prev = [], -1, 0, None
    for b in blocks:
        if prev is None or b.stride > 1 or b.out != prev.out or b.kind != prev.kind:
            stage, index = stage + 1, 0
        out.append((stage, index))
        index, prev = index + 1, b
    return out


def _timm_efficientnet(spec, family):
    """timm ``EfficientNet`` / ``MobileNetV3`` classes (MobileNetV2, V3, EfficientNet-EdgeTPU)."""
    P = block_prefixes(spec)
    blocks = list(spec.blocks)
    slots = [Slot("conv_stem", f"{P[0]}_conv", "conv"), Slot("bn1", f"{P[0]}_bn", "bn")]
    last = len(blocks)
    if family != "mobilenet_v3":  # the 1x1 head conv is conv_head / bn2, outside the stages
        last -= 1
        slots += [Slot("conv_head", f"{P[last]}_conv", "conv"), Slot("bn2", f"{P[last]}_bn", "bn")]
    for (stage, index), b, p in zip(_timm_stage_index(blocks[1:last]), blocks[1:last], P[1:last]):
        s = f"blocks.{stage}.{index}"
        if b.kind == "ds":
            slots += [Slot(f"{s}.conv_dw", f"{p}_dw", "conv"), Slot(f"{s}.bn1", f"{p}_dw_bn", "bn")]
            slots += _se(s, p) if b.se else []
            slots += [Slot(f"{s}.conv_pw", f"{p}_project_conv", "conv"), Slot(f"{s}.bn2", f"{p}_project_bn", "bn")]
        elif b.kind == "ir":
            slots += _conv_bn(f"{s}.conv_pw", f"{s}.bn1", f"{p}_expand")
            slots += [Slot(f"{s}.conv_dw", f"{p}_spatial_conv", "conv"), Slot(f"{s}.bn2", f"{p}_spatial_bn", "bn")]
            slots += _se(s, p) if b.se else []
            slots += [Slot(f"{s}.conv_pwl", f"{p}_project_conv", "conv"), Slot(f"{s}.bn3", f"{p}_project_bn", "bn")]
        elif b.kind == "er":
            slots += _conv_bn(f"{s}.conv_exp", f"{s}.bn1", f"{p}_fused")
            slots += [Slot(f"{s}.conv_pwl", f"{p}_project_conv", "conv"), Slot(f"{s}.bn2", f"{p}_project_bn", "bn")]
        elif b.kind == "conv":
            slots += [Slot(f"{s}.conv", f"{p}_conv", "conv"), Slot(f"{s}.bn1", f"{p}_bn", "bn")]
        else:
            raise CheckpointError(f"block kind {b.kind!r} of {spec.name} has no timm key map.")
    if spec.top.kind == "pool_conv_fc":
        slots.append(Slot("conv_head", "head_conv", "conv", "top"))
    slots.append(Slot("classifier", "predictions", "dense", "classifier"))
    return slots


def _torchvision_mobilenet_v2(spec):
    P = block_prefixes(spec)
    slots = []
    for j, (b, p) in enumerate(zip(spec.blocks, P)):
        f = f"features.{j}"
        if b.kind == "conv":
            slots += [Slot(f"{f}.0", f"{p}_conv", "conv"), Slot(f"{f}.1", f"{p}_bn", "bn")]
        elif b.kind == "ds":
            slots += [Slot(f"{f}.conv.0.0", f"{p}_dw", "conv"), Slot(f"{f}.conv.0.1", f"{p}_dw_bn", "bn"),
                      Slot(f"{f}.conv.1", f"{p}_project_conv", "conv"), Slot(f"{f}.conv.2", f"{p}_project_bn", "bn")]
        else:
            slots += [Slot(f"{f}.conv.0.0", f"{p}_expand_conv", "conv"), Slot(f"{f}.conv.0.1", f"{p}_expand_bn", "bn"),
                      Slot(f"{f}.conv.1.0", f"{p}_spatial_conv", "conv"),
                      Slot(f"{f}.conv.1.1", f"{p}_spatial_bn", "bn"),
                      Slot(f"{f}.conv.2", f"{p}_project_conv", "conv"), Slot(f"{f}.conv.3", f"{p}_project_bn", "bn")]
    return slots + [Slot("classifier.1", "predictions", "dense", "classifier")]


def _torchvision_shufflenet_v2(spec):
    P = block_prefixes(spec)
    blocks = list(spec.blocks)
    slots = [Slot("conv1.0", f"{P[0]}_conv", "conv"), Slot("conv1.1", f"{P[0]}_bn", "bn"),
             Slot("conv5.0", f"{P[-1]}_conv", "conv"), Slot("conv5.1", f"{P[-1]}_bn", "bn")]
    stage, index = 1, 0
    for b, p in zip(blocks, P):
        if b.kind != "shuffle_v2":
            continue
        if b.stride > 1:
            stage, index = stage + 1, 0
        s = f"stage{stage}.{index}"
        if b.stride > 1:
            slots += [Slot(f"{s}.branch1.0", f"{p}_branch1_dw", "conv"),
                      Slot(f"{s}.branch1.1", f"{p}_branch1_dw_bn", "bn"),
                      Slot(f"{s}.branch1.2", f"{p}_branch1_pw_conv", "conv"),
                      Slot(f"{s}.branch1.3", f"{p}_branch1_pw_bn", "bn")]
        slots += [Slot(f"{s}.branch2.0", f"{p}_branch2_pw1_conv", "conv"),
                  Slot(f"{s}.branch2.1", f"{p}_branch2_pw1_bn", "bn"),
                  Slot(f"{s}.branch2.3", f"{p}_branch2_dw", "conv"), Slot(f"{s}.branch2.4", f"{p}_branch2_dw_bn", "bn"),
                  Slot(f"{s}.branch2.5", f"{p}_branch2_pw2_conv", "conv"),
                  Slot(f"{s}.branch2.6", f"{p}_branch2_pw2_bn", "bn")]
        index += 1
    return slots + [Slot("fc", "predictions", "dense", "classifier")]


def _megvii_shufflenet_v1(spec):
    P = block_prefixes(spec)
    slots = [Slot("first_conv.0", f"{P[0]}_conv", "conv"), Slot("first_conv.1", f"{P[0]}_bn", "bn")]
    units = [(b, p) for b, p in zip(spec.blocks, P) if b.kind == "shuffle_v1"]
    for i, (b, p) in enumerate(units):
        f = f"features.{i}"
        slots += [Slot(f"{f}.branch_main_1.0", f"{p}_gconv1_conv", "conv"),
                  Slot(f"{f}.branch_main_1.1", f"{p}_gconv1_bn", "bn"),
                  Slot(f"{f}.branch_main_1.3", f"{p}_dw", "conv"), Slot(f"{f}.branch_main_1.4", f"{p}_dw_bn", "bn"),
                  Slot(f"{f}.branch_main_2.0", f"{p}_gconv2_conv", "conv"),
                  Slot(f"{f}.branch_main_2.1", f"{p}_gconv2_bn", "bn")]
    return slots + [Slot("classifier.0", "predictions", "dense", "classifier")]


def _ghost_module(src, layer, repghost, deploy):
    slots = _conv_bn(f"{src}.primary_conv.0", f"{src}.primary_conv.1", f"{layer}_primary")
    if deploy:
        return slots + [Slot(f"{src}.cheap_operation", f"{layer}_cheap_dw", "conv")]
    slots += [Slot(f"{src}.cheap_operation.0", f"{layer}_cheap_dw", "conv"),
              Slot(f"{src}.cheap_operation.1", f"{layer}_cheap_bn", "bn")]
    if repghost:
        slots.append(Slot(f"{src}.fusion_bn.0", f"{layer}_fusion_bn", "bn"))
    return slots


def _timm_ghost(spec, family, layer_names, deploy=False):
    """timm ``GhostNet`` / ``RepGhostNet``: stages as in the family's table, then a ConvBnAct stage."""
    P = block_prefixes(spec)
    repghost = family == "repghostnet"
    cfg = families.REPGHOST_CFG if repghost else families.GHOSTNET_CFG
    positions = [(s, i) for s, stage in enumerate(cfg) for i in range(len(stage))]
    body = list(zip(spec.blocks, P))[1:-1]
    if len(positions) != len(body):
        raise CheckpointError(f"{spec.name} has {len(body)} bottlenecks but timm's {FAMILY_NAMES[family]} has "
                              f"{len(positions)}; only the published layout can load timm checkpoints.")
    slots = [Slot("conv_stem", f"{P[0]}_conv", "conv"), Slot("bn1", f"{P[0]}_bn", "bn")]
    for (s, i), (b, p) in zip(positions, body):
        src = f"blocks.{s}.{i}"
        slots += _ghost_module(f"{src}.ghost1", f"{p}_ghost1", repghost, deploy)
        if b.stride > 1:
            slots += [Slot(f"{src}.conv_dw", f"{p}_dw", "conv"), Slot(f"{src}.bn_dw", f"{p}_dw_bn", "bn")]
        slots += _se(src, p) if b.se else []
        slots += _ghost_module(f"{src}.ghost2", f"{p}_ghost2", repghost, deploy)
        if f"{p}_shortcut_conv" in layer_names:
            slots += [Slot(f"{src}.shortcut.0", f"{p}_shortcut_dw", "conv"),
                      Slot(f"{src}.shortcut.1", f"{p}_shortcut_dw_bn", "bn"),
                      Slot(f"{src}.shortcut.2", f"{p}_shortcut_conv", "conv"),
                      Slot(f"{src}.shortcut.3", f"{p}_shortcut_bn", "bn")]
    last = f"blocks.{len(cfg)}.0"
    slots += [Slot(f"{last}.conv", f"{P[-1]}_conv", "conv"), Slot(f"{last}.bn1", f"{P[-1]}_bn", "bn"),
              Slot("conv_head", "head_conv", "conv", "top"), Slot("classifier", "predictions", "dense", "classifier")]
    return slots


def _timm_regnetx(spec, layer_names):
    P = block_prefixes(spec)
    slots = [Slot("stem.conv", f"{P[0]}_conv", "conv"), Slot("stem.bn", f"{P[0]}_bn", "bn")]
    stage, index = 0, 1
    for b, p in list(zip(spec.blocks, P))[1:]:
        if b.stride > 1:
            stage, index = stage + 1, 1
        s = f"s{stage}.b{index}"
        for part in ("conv1", "conv2", "conv3"):
            slots += _conv_bn(f"{s}.{part}.conv", f"{s}.{part}.bn", f"{p}_{part}")
        if f"{p}_downsample_conv" in layer_names:
            slots += _conv_bn(f"{s}.downsample.conv", f"{s}.downsample.bn", f"{p}_downsample")
        if b.se:
            slots += [Slot(f"{s}.se.fc1", f"{p}_se_reduce", "conv"), Slot(f"{s}.se.fc2", f"{p}_se_expand", "conv")]
        index += 1
    return slots + [Slot("head.fc", "predictions", "dense", "classifier")]


def _vgg_stage_names(spec):
    P = block_prefixes(spec)
    stage, conv, out = 1, 1, []
    for b, p in zip(spec.blocks, P):
        out.append((p, stage, conv))
        conv += 1
        if b.stride > 1:
            stage, conv = stage + 1, 1
    return out


def _torchvision_vgg16(spec):
    slots, index = [], 0
    for (p, _, _), b in zip(_vgg_stage_names(spec), spec.blocks):
        slots.append(Slot(f"features.{index}", f"{p}_conv", "conv"))
        index += 2 + (1 if b.stride > 1 else 0)  # conv, ReLU (, MaxPool)
    return slots + [Slot("classifier.0", "fc1", "dense_nchw", "top"), Slot("classifier.3", "fc2", "dense", "top"),
                    Slot("classifier.6", "predictions", "dense", "classifier")]


def _keras_vgg16(spec):
    slots = [Slot(f"block{s}_conv{c}", f"{p}_conv", "keras") for p, s, c in _vgg_stage_names(spec)]
    return slots + [Slot("fc1", "fc1", "keras", "top"), Slot("fc2", "fc2", "keras", "top"),
                    Slot("predictions", "predictions", "keras", "classifier")]


def _keras_mobilenet_blocks(spec, block_key, layer):
    """Slots of the blocks between stem and head in Keras Applications' MobileNet V2 / V3.

    ``block_key(i)`` names the i-th block and ``layer(key, part, bn)`` a layer of it (the two
    versions differ only in these names: ``block_3_expand_BN`` vs ``expanded_conv_3/expand/BatchNorm``).
    """
    slots = []
    for i, (b, p) in enumerate(list(zip(spec.blocks, block_prefixes(spec)))[1:-1]):
        k = block_key(i)
        parts = ([("expand", "expand_conv", "expand_bn"), ("depthwise", "spatial_conv", "spatial_bn")]
                 if b.kind == "ir" else [("depthwise", "dw", "dw_bn")])
        for part, conv, bn in parts + [("project", "project_conv", "project_bn")]:
            if part == "project" and b.se:
                slots += [Slot(layer(k, "squeeze_excite/Conv", False), f"{p}_se_reduce", "keras"),
                          Slot(layer(k, "squeeze_excite/Conv_1", False), f"{p}_se_expand", "keras")]
            slots += [Slot(layer(k, part, False), f"{p}_{conv}", "keras"),
                      Slot(layer(k, part, True), f"{p}_{bn}", "keras")]
    return slots


def _keras_mobilenet_v2(spec):
    """Keras Applications ``MobileNetV2`` layer names (``Conv1``, ``expanded_conv_*``, ``block_<i>_*``)."""
    P = block_prefixes(spec)
    blocks = _keras_mobilenet_blocks(spec, lambda i: "expanded_conv" if i == 0 else f"block_{i}",
                                     lambda k, part, bn: f"{k}_{part}" + ("_BN" if bn else ""))
    return ([Slot("Conv1", f"{P[0]}_conv", "keras"), Slot("bn_Conv1", f"{P[0]}_bn", "keras"),
             Slot("Conv_1", f"{P[-1]}_conv", "keras"), Slot("Conv_1_bn", f"{P[-1]}_bn", "keras")]
            + blocks + [Slot("predictions", "predictions", "keras", "classifier")])


def _keras_mobilenet_v3(spec):
    """Keras Applications ``MobileNetV3{Large,Small}`` layer names (``expanded_conv_<i>/...``)."""
    P = block_prefixes(spec)
    blocks = _keras_mobilenet_blocks(spec, lambda i: "expanded_conv" if i == 0 else f"expanded_conv_{i}",
                                     lambda k, part, bn: f"{k}/{part}" + ("/BatchNorm" if bn else ""))
    return ([Slot("Conv", f"{P[0]}_conv", "keras"), Slot("Conv/BatchNorm", f"{P[0]}_bn", "keras"),
             Slot("Conv_1", f"{P[-1]}_conv", "keras"), Slot("Conv_1/BatchNorm", f"{P[-1]}_bn", "keras")]
            + blocks + [Slot("Conv_2", "head_conv", "keras", "top"),
                        Slot("Logits", "predictions", "keras_logits", "classifier")])


def key_map(spec, family, style, layer_names):
    """Slots mapping a ``style`` checkpoint of ``family`` onto the model of ``spec``.

    ``layer_names``: the model's layer names (optional sub-layers such as a GhostNet
    shortcut exist only where the widths require them).
    """
    if style in ("timm", "timm_deploy"):
        if family in ("mobilenet_v2", "mobilenet_v3", "efficientnet_edgetpu"):
            return _timm_efficientnet(spec, family)
        if family in ("ghostnet", "repghostnet"):
            return _timm_ghost(spec, family, layer_names, deploy=style == "timm_deploy")
        if family == "regnetx":
            return _timm_regnetx(spec, layer_names)
    if style == "torchvision":
        if family == "mobilenet_v2":
            return _torchvision_mobilenet_v2(spec)
        if family == "shufflenet_v2":
            return _torchvision_shufflenet_v2(spec)
        if family == "vgg16":
            return _torchvision_vgg16(spec)
    if style == "megvii" and family == "shufflenet_v1":
        return _megvii_shufflenet_v1(spec)
    if style == "keras":
        if family == "mobilenet_v2":
            return _keras_mobilenet_v2(spec)
        if family == "mobilenet_v3":
            return _keras_mobilenet_v3(spec)
        if family == "vgg16":
            return _keras_vgg16(spec)
    raise CheckpointError(f"kerasnets has no key map for {STYLE_NAMES.get(style, style)} checkpoints of "
                          f"{FAMILY_NAMES.get(family, family)}; convert the checkpoint from a supported source.")

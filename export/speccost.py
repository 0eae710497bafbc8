"""Costing a spec without building its whole Keras model: the estimator's latency model for a search loop.

Building a model takes about a second and analyzing it 40 ms; a search costs thousands of
candidates whose blocks repeat. A :class:`SpecCoster` analyzes each *block* once: the block's
signature is its fields, its input height, width and channels, the build options and (for
the last block) the classifier top; the first time a signature is seen, that one block is
built alone as a tiny Keras model by :func:`kerasnets.builder.build_model` (so no block kind
is re-implemented here) and described by :func:`kerasnets.export.graph.analyze`. A candidate's graph is
its blocks' cached ops, renamed to the layer names the full model would have and chained
input to output; it is then costed by the same :func:`kerasnets.export.cost.estimate` (placement,
per-op rows, totals) as a built model, so the two agree op for op.

What the stitching checks: the converter folds and fuses inside a block, except where an op
that reads a block's output alone folds into it (a BatchNorm after a linear conv, a ReLU after a
linear conv, add or multiply; the rules of :func:`kerasnets.export.graph.analyze`), which the per-block ops
cannot show. Such a spec, and a torch-convention max pool (which the builder checks against the
block before it), is costed from its whole model instead (``method`` says which). Every zoo model
at 96x96 on m55h and edgetpu_usb gives the same rows and totals both ways (tests/export/test_speccost.py).
"""
import dataclasses
import numbers
import time

from kerasnets.export.cost import estimate
from kerasnets.export.graph import CONV_KINDS, FUSABLE_ACTIVATIONS, ModelGraph, Op, analyze
from kerasnets.backend import keras
from kerasnets.builder import BuildOptions, block_prefixes, build_model
from kerasnets.errors import ModelConfigError, UsageError
from kerasnets.spec import ModelSpec, Top

INPUT_NAME = "input"  # kerasnets.get_model's input layer name


@dataclasses.dataclass
class _BlockOps:
    """The analyzed ops of one block (input op dropped), its layer-name prefix and output op."""
    prefix: str
    input_name: str
    ops: list
    output: str
    float_head: tuple
    out_shape: tuple       # (height, width, channels) of the block output


def _options_key(options):
    return tuple(sorted(dataclasses.asdict(options).items()))


def check_input_shape(input_shape, spec=None):
    """``input_shape`` as (height, width, channels) (that ``spec`` can take); ModelConfigError otherwise."""
    if isinstance(input_shape, (str, bytes)) or not hasattr(input_shape, "__len__") or len(input_shape) not in (2, 3):
        raise ModelConfigError(f"input_shape={input_shape!r} is not (height, width[, channels]); pass e.g. "
                               "(224, 224, 3).")
    shape = tuple(input_shape) + ((3,) if len(input_shape) == 2 else ())
    if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1 for v in shape):
        raise ModelConfigError(f"input_shape={input_shape!r} must hold positive integers; pass e.g. (224, 224, 3).")
    shape = tuple(int(v) for v in shape)
    stride = spec.total_stride if spec is not None else 1
    if shape[0] < stride or shape[1] < stride:
        raise ModelConfigError(f"input_shape={shape!r} is smaller than the total stride {stride} of {spec.name}; "
                               f"pass at least {stride}x{stride}.")
    return shape


class SpecCoster:
    """Estimates specs on hardware profiles from per-block cached ops.

    Args:
      input_shape: (height, width[, channels]) every spec is costed at.
      classes: classifier width of the top.
      options: a :class:`kerasnets.builder.BuildOptions` (or a dict of its fields).
      classifier_activation: the top's activation, as ``get_model`` takes it.

    ``stats`` counts block signatures built (``misses``) and reused (``hits``) and the seconds
    spent building them.
    """

    def __init__(self, input_shape=(224, 224, 3), classes=1000, options=None, classifier_activation="softmax"):
        if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
            raise ModelConfigError(f"classes={classes!r} must be a positive integer.")
        if options is None:
            options = BuildOptions()
        elif isinstance(options, dict):
            options = BuildOptions(**options)
        elif not isinstance(options, BuildOptions):
            raise UsageError(f"options={options!r} must be a BuildOptions or a dict of its fields.")
        self.input_shape = check_input_shape(input_shape)
        self.classes, self.options, self.classifier_activation = classes, options, classifier_activation
        self._options_key = _options_key(options)
        self._blocks = {}
        self._graphs = {}
        self.stats = {"hits": 0, "misses": 0, "build_s": 0.0, "full_builds": 0}

    # ------------------------------------------------------------------ blocks ----
    def _block_ops(self, block, shape, top):
        """The cached :class:`_BlockOps` of ``block`` on an input of ``shape`` (with ``top`` when last)."""
        key = (block, shape, self._options_key, top)
        hit = self._blocks.get(key)
        if hit is not None:
            self.stats["hits"] += 1
            return hit
        started = time.perf_counter()
        mini = ModelSpec(f"speccost_{block.kind}", (block,), top or Top(), default_size=shape[:2])
        inputs = keras.Input(shape, name=INPUT_NAME)
        model = build_model(mini, inputs, include_top=top is not None, classes=self.classes,
                            classifier_activation=self.classifier_activation, options=self.options)
        graph = analyze(model)
        ops = [op for op in graph.ops if op.kind != "input"]
        out = graph.by_name[graph.outputs[0]]
        entry = _BlockOps(block_prefixes(mini)[0], INPUT_NAME, ops, out.name, tuple(graph.float_head),
                          tuple(out.out_shape))
        self._blocks[key] = entry
        self.stats["misses"] += 1
        self.stats["build_s"] += time.perf_counter() - started
        return entry

    def _full_graph(self, spec):
        self.stats["full_builds"] += 1
        model = build_model(spec, keras.Input(self.input_shape, name=INPUT_NAME), classes=self.classes,
                            classifier_activation=self.classifier_activation, options=self.options)
        return analyze(model)

    # ------------------------------------------------------------------- graph ----
    def graph(self, spec):
        """``(ModelGraph, method)`` of ``spec``: ``method`` is ``"blocks"`` (stitched from cached block ops) or
        ``"full"`` (a spec whose ops fuse across blocks, built whole)."""
        if not isinstance(spec, ModelSpec):
            raise UsageError(f"spec={spec!r} is a {type(spec).__name__}; pass a kerasnets.spec.ModelSpec.")
        cached = self._graphs.get(spec)
        if cached is not None:
            return cached
        check_input_shape(self.input_shape, spec)
        torch_pool = self.options.convention == "torch" and any(b.kind == "maxpool" for b in spec.blocks)
        result = None if torch_pool else self._stitch(spec)
        if result is None:
            result = (self._full_graph(spec), "full")
        self._graphs[spec] = result
        return result

    def _stitch(self, spec):
        """The spec's graph from cached block ops, or None where an op would fuse across a block boundary."""
        prefixes = block_prefixes(spec)
        shape = self.input_shape
        last = len(spec.blocks) - 1
        first = Op(0, INPUT_NAME, "InputLayer", "input", (), [], [], tuple(shape))
        first.nonunit_dims = sum(1 for d in shape if d != 1)
        ops, prev_out, float_head, boundaries = [first], INPUT_NAME, (), []
        for i, (block, prefix) in enumerate(zip(spec.blocks, prefixes)):
            entry = self._block_ops(block, shape, spec.top if i == last else None)
            rename = _renamer(entry.prefix, prefix, entry.input_name, prev_out)
            if i:
                boundaries.append(prev_out)
            for op in entry.ops:
                new = object.__new__(Op)  # a shallow copy, renamed (dataclasses.replace re-runs __init__: 5x slower)
                new.__dict__.update(op.__dict__)
                new.name, new.inputs, new.consumers = rename(op.name), [rename(n) for n in op.inputs], []
                new.fused_into = rename(op.fused_into) if op.fused_into else ""
                ops.append(new)
            prev_out = rename(entry.output)
            if i == last:
                float_head = tuple(rename(n) for n in entry.float_head)
            shape = entry.out_shape
        for index, op in enumerate(ops):
            op.index = index
        name = spec.name if self.options.convention == "tf" else f"{spec.name}_{self.options.convention}"
        graph = ModelGraph(name, ops, [INPUT_NAME], [prev_out], float_head)
        for op in ops:
            for src in op.inputs:
                graph.by_name[src].consumers.append(op.name)
        graph.by_name[prev_out].consumers.append("<output>")
        if any(_fuses_across(graph, graph.by_name[name]) for name in boundaries):
            return None
        return graph, "blocks"

    # ---------------------------------------------------------------- estimate ----
    def estimate(self, spec, profile, precision=None, policy="max_npu"):
        """:func:`kerasnets.export.cost.estimate` of ``spec`` (result dict, plus ``method``: blocks or full)."""
        graph, method = self.graph(spec)
        result = estimate(graph, profile, precision=precision, policy=policy)
        result["method"] = method
        return result

    def latency_ms(self, spec, profile, precision=None, policy="max_npu"):
        """Estimated total latency of ``spec`` on ``profile``, ms."""
        return float(self.estimate(spec, profile, precision, policy)["totals"]["latency_ms"])


def _fuses_across(graph, src):
    """Whether the converter would fold or fuse the op reading block output ``src`` into ``src``'s block
    (the rules of :func:`kerasnets.export.graph.analyze`: a BatchNorm into a linear conv it alone reads, a ReLU / ReLU6
    into the linear conv, add or multiply that ends there), which the per-block ops do not show."""
    if len(src.consumers) != 1 or src.consumers[0] == "<output>":
        return False
    op = graph.by_name[src.consumers[0]]
    if op.fused_into:
        return False
    if op.kind == "batchnorm":
        return src.kind in CONV_KINDS and not src.fused_into and src.activation == "linear"
    if op.kind == "activation" and op.activation in FUSABLE_ACTIVATIONS:
        head = graph.head_of(src)
        return head.kind in CONV_KINDS + ("add", "multiply") and head.activation == "linear"
    return False


def _renamer(old_prefix, new_prefix, old_input, new_input):
    head = old_prefix + "_"

    def rename(name):
        if name == old_input:
            return new_input
        if name.startswith(head):
            return new_prefix + "_" + name[len(head):]
        return name
    return rename


def estimate_spec(spec, profile, input_shape=(224, 224, 3), classes=1000, options=None, precision=None,
                  policy="max_npu", coster=None):
    """:func:`kerasnets.export.cost.estimate` of ``spec`` at ``input_shape`` without building the whole model.

    Pass a :class:`SpecCoster` as ``coster`` to reuse its cache across calls (its input shape,
    classes and options then apply).
    """
    coster = coster or SpecCoster(input_shape, classes, options)
    return coster.estimate(spec, profile, precision, policy)

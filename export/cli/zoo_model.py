"""Building the zoo model a script names (shared by kerasnets-estimate and kerasnets-partition)."""
import kerasnets
from kerasnets.cli import parse_size
from kerasnets.errors import UsageError


def build_model(name, input_size, classes, overrides):
    """``kerasnets.get_model(name)`` at ``input_size`` ('HxW', or the model's default when empty)."""
    if not name:
        raise UsageError("--model is required; pick a name from kerasnets-zoo, e.g. --model=mobilenet_v2_100.")
    info = kerasnets.get_model_info(name)
    h, w = parse_size(input_size) if input_size else info["default_input_shape"][:2]
    return kerasnets.get_model(name, input_shape=(h, w, 3), classes=classes, **overrides), (h, w)

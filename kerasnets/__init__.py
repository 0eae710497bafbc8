"""kerasnets: hardware-friendly vision backbones in Keras 2 (tf_keras), ready for edge NPUs.

Quick start::

    import kerasnets
    model = kerasnets.get_model("mobilenet_v2_100", input_shape=(224, 224, 3), classes=10)
    inference = kerasnets.deploy(model)   # BN folded, RepGhost fused
    torch_like = kerasnets.get_model("mobilenet_v2_100", convention="torch")  # PyTorch padding / BN eps
    backbone = kerasnets.get_model("mobilenet_v2_100", features_only=True, out_indices=(1, 2, 3, 4))
"""
from kerasnets.backend import keras, tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS first)
from kerasnets.builder import feature_info, model_convention
from kerasnets.deploy import deploy
from kerasnets.checkpoints import load_weights, preprocessing_for
from kerasnets.errors import CheckpointError, ModelConfigError
from kerasnets.stats import count_macs, count_params, layer_macs
from kerasnets.zoo import (AXSpine, EfficientNetEdgeTPU, GhostNet, MixVarGENet, MobileNetV2, MobileNetV3, RegNetX,
                           RepGhostNet, ResNet50, ResNet50V2, ResNet152V2, ShuffleNetV1, ShuffleNetV2,
                           TinyVargNetV2, VargNetV2, VGG16, get_model, get_model_info, list_models)

__all__ = ["get_model", "list_models", "get_model_info", "deploy", "count_macs", "count_params",
           "layer_macs", "ModelConfigError", "MobileNetV2", "AXSpine", "ShuffleNetV1", "ShuffleNetV2",
           "GhostNet", "RepGhostNet", "EfficientNetEdgeTPU", "MobileNetV3", "RegNetX", "VGG16", "ResNet50",
           "ResNet50V2", "ResNet152V2", "VargNetV2", "TinyVargNetV2", "MixVarGENet",
           "feature_info", "model_convention", "load_weights", "preprocessing_for", "CheckpointError"]
__version__ = "0.1.0"

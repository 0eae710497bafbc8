"""Reading checkpoints: every supported source becomes a :class:`Checkpoint` of numpy arrays.

Sources: a ``.safetensors`` file, a Hugging Face snapshot folder of a timm model
(``config.json`` + ``model.safetensors``), a PyTorch ``.pth`` / ``.bin`` / ``.pt`` state dict
(needs torch, imported only here), a Keras ``.h5`` weights file (Keras Applications' or one
saved by kerasnets itself), and a hub id ``hf://timm/<model>.<tag>`` (needs huggingface_hub and
a network). Nothing here knows about Keras layers; see ``keymaps`` and ``loader``.
"""
import dataclasses
import json
import os
from typing import Optional

import numpy as np

from kerasnets.errors import CheckpointError

TORCH_EXTENSIONS = (".pth", ".pt", ".bin", ".pth.tar", ".tar", ".ckpt")
HUB_PREFIX = "hf://"
# Reference preprocessing of the sources, mean / std in [0, 255] pixel units (as the pipelines use).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass
class Checkpoint:
    """A loaded checkpoint.

    tensors: name -> float32 array, in the source's own layout (PyTorch OIHW, or Keras
      layouts for ``.h5`` files, named ``"<layer>/<weight>"``).
    kind: ``"torch"`` (a PyTorch state dict, from any container) or ``"keras"`` (an ``.h5``).
    convention: the numeric convention the source was trained in (``"tf"`` / ``"torch"``),
      or None when the source does not say (a kerasnets-saved ``.h5``).
    architecture: the source's model name when it is known (timm ``config.json``, hub id).
    preprocessing: the source's input preprocessing (see ``kerasnets.preprocessing_for``).
    """
    source: str
    tensors: dict
    kind: str
    convention: Optional[str] = None
    architecture: Optional[str] = None
    num_classes: Optional[int] = None
    preprocessing: Optional[dict] = None
    convention_from: str = "format"  # what ``convention`` was read from: config, hub id, file name, format


def _pixels(values):
    return [round(float(v) * 255.0, 4) for v in values]


def timm_preprocessing(pretrained_cfg, architecture):
    """Preprocessing dict from a timm ``pretrained_cfg`` (mean/std given on [0, 1] inputs)."""
    cfg = pretrained_cfg or {}
    size = cfg.get("input_size") or [3, 224, 224]
    return {"source": f"timm {architecture}", "channel_order": "RGB",
            "mean": _pixels(cfg.get("mean", IMAGENET_MEAN)), "std": _pixels(cfg.get("std", IMAGENET_STD)),
            "interpolation": cfg.get("interpolation", "bicubic"), "crop_pct": float(cfg.get("crop_pct", 0.875)),
            "input_size": [int(size[-2]), int(size[-1])]}


def torchvision_preprocessing(source):
    """torchvision's ImageNet recipe: resize 256 (bilinear), centre crop 224, ImageNet mean/std."""
    return {"source": source, "channel_order": "RGB", "mean": _pixels(IMAGENET_MEAN), "std": _pixels(IMAGENET_STD),
            "interpolation": "bilinear", "crop_pct": 0.875, "input_size": [224, 224]}


def _read_safetensors(path):
    try:
        from safetensors.numpy import load_file
    except ImportError:  # pragma: no cover - safetensors is an install requirement
        raise CheckpointError(f"reading {path} needs the safetensors package; pip install safetensors.") from None
    try:
        tensors = load_file(path)
    except Exception as exc:  # SafetensorError, OSError, or a header that is not JSON
        raise CheckpointError(f"{path} is not a readable safetensors file ({type(exc).__name__}: "
                              f"{str(exc)[:80]}); re-download it, or pass a .pth / .h5 / snapshot folder."
                              ) from None
    return {k: np.asarray(v, dtype=np.float32) if v.dtype != np.float32 else v for k, v in tensors.items()}


def _read_torch(path):
    try:
        import torch
    except ImportError:
        raise CheckpointError(f"{path} is a PyTorch checkpoint and reading it needs torch: install the extra "
                              "with pip install 'kerasnets[torch]', or convert it to .safetensors "
                              "(safetensors.torch.save_file) and pass that instead.") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({type(exc).__name__}: "
                              f"{str(exc)[:80]}); re-download it or pass a .safetensors file.") from None
    for wrapper in ("state_dict", "model", "state_dict_ema", "model_ema"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict) or not all(hasattr(v, "numpy") for v in obj.values()):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict of tensors; save "
                              "model.state_dict() and pass that file.")
    return {k: v.detach().float().numpy() for k, v in obj.items()}


def _strip_wrappers(tensors):
    """Drop DataParallel's ``module.`` prefix and BatchNorm's ``num_batches_tracked`` counters."""
    if tensors and all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return {k: v for k, v in tensors.items() if not k.endswith("num_batches_tracked")}


def _convention_from_name(name):
    return "tf" if os.path.basename(name).startswith("tf_") else "torch"


def _read_h5(path):
    import h5py
    try:
        f = h5py.File(path, "r")
    except Exception as exc:
        raise CheckpointError(f"{path} is not a readable HDF5 weights file ({type(exc).__name__}); "
                              "re-download it.") from None
    with f:
        root = f["model_weights"] if "model_weights" in f else f
        names = [n.decode() if isinstance(n, bytes) else n for n in root.attrs.get("layer_names", [])]
        if not names:
            raise CheckpointError(f"{path} has no Keras 'layer_names'; pass a file written by "
                                  "Model.save_weights or a Keras Applications weights file.")
        tensors = {}
        for layer in names:
            group = root[layer]
            for wname in group.attrs.get("weight_names", []):
                wname = wname.decode() if isinstance(wname, bytes) else wname
                short = wname.split("/")[-1].split(":")[0]
                tensors[f"{layer}/{short}"] = np.asarray(group[wname], dtype=np.float32)
    return tensors, names


def _read_folder(path):
    config_path = os.path.join(path, "config.json")
    weights = [n for n in ("model.safetensors", "pytorch_model.bin") if os.path.exists(os.path.join(path, n))]
    if not weights:
        raise CheckpointError(f"folder {path} has no model.safetensors (or pytorch_model.bin); pass a Hugging "
                              "Face snapshot folder of a timm model or the checkpoint file itself.")
    config = {}
    if os.path.exists(config_path):
        with open(config_path) as f:
            config = json.load(f)
    weight_path = os.path.join(path, weights[0])
    tensors = _read_safetensors(weight_path) if weights[0].endswith(".safetensors") else _read_torch(weight_path)
    arch = config.get("architecture") or os.path.basename(os.path.normpath(path)).split(".")[0]
    return Checkpoint(source=path, tensors=_strip_wrappers(tensors), kind="torch",
                      convention=_convention_from_name(arch), architecture=arch,
                      convention_from="config" if config.get("architecture") else "file name",
                      num_classes=config.get("num_classes"),
                      preprocessing=timm_preprocessing(config.get("pretrained_cfg"), arch))


def hub_folder(hub_id):
    """Local snapshot folder of ``hf://timm/<model>.<tag>`` (downloaded when online)."""
    repo = hub_id[len(HUB_PREFIX):].strip("/")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise CheckpointError(f"weights={hub_id!r} is not a hub id; use hf://<org>/<model>.<tag>, "
                              "e.g. hf://timm/mobilenetv2_100.ra_in1k.")
    fetch = (f"download config.json and model.safetensors from https://huggingface.co/{repo} into a folder "
             f"and pass that folder as weights=")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise CheckpointError(f"weights={hub_id!r} needs huggingface_hub (pip install 'kerasnets[hub]'); "
                              f"or {fetch}.") from None
    try:
        return snapshot_download(repo_id=repo, allow_patterns=["config.json", "model.safetensors"])
    except Exception as exc:
        raise CheckpointError(f"weights={hub_id!r} could not be fetched ({type(exc).__name__}; offline, or "
                              f"no such model); {fetch}.") from None


def read_checkpoint(src):
    """Read ``src`` (path, folder or hub id) into a :class:`Checkpoint`; CheckpointError if unreadable."""
    src = os.fspath(src) if not isinstance(src, str) else src
    if src.startswith(HUB_PREFIX):
        checkpoint = _read_folder(hub_folder(src))
        checkpoint.source = src
        checkpoint.architecture = src[len(HUB_PREFIX):].split("/", 1)[1].split(".")[0]
        checkpoint.convention = _convention_from_name(checkpoint.architecture)
        checkpoint.convention_from = "hub id"
        return checkpoint
    if os.path.isdir(src):
        return _read_folder(src)
    if not os.path.isfile(src):
        raise CheckpointError(f"weights={src!r} is not a file, folder or hf:// hub id; pass the path of a "
                              ".safetensors / .pth / .h5 checkpoint, a timm snapshot folder or hf://timm/<model>.")
    lower = src.lower()
    if lower.endswith(".safetensors"):
        return Checkpoint(src, _strip_wrappers(_read_safetensors(src)), "torch", _convention_from_name(src),
                          convention_from="file name")
    if lower.endswith(TORCH_EXTENSIONS):
        return Checkpoint(src, _strip_wrappers(_read_torch(src)), "torch", _convention_from_name(src),
                          convention_from="file name")
    if lower.endswith((".h5", ".hdf5")):
        tensors, _ = _read_h5(src)
        return Checkpoint(src, tensors, "keras", None)
    raise CheckpointError(f"weights={src!r} has an unknown extension; pass a .safetensors, .pth/.bin, Keras .h5 "
                          "file, a timm snapshot folder or hf://timm/<model>.<tag>.")

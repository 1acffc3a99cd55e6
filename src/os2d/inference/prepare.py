"""From class images to a :class:`~os2d.inference.bank.ClassBank` (features computed once)."""
from __future__ import annotations

from typing import Callable, List, Mapping, Sequence, Tuple, Union

import torch
from PIL import Image

from os2d.data.images import ImageLike, load_image
from os2d.data.preprocess import check_class_image_size, resize, size_by_area, to_tensor
from os2d.data.trim import trim_uniform_border
from os2d.errors import InvalidInputError, InvalidTypeError
from os2d.inference.bank import BankKey, ClassBank, TensorStore
from os2d.model.os2d import OS2DModel
from os2d.inference.cascade import class_templates
from os2d.inference.verify import color_signature
from os2d.ops.features import l2_normalize

ClassSpec = Mapping[str, Union[ImageLike, Sequence[ImageLike]]]
Backbone = Callable[[torch.Tensor], torch.Tensor]

_TRANSPOSES = {
    "rot90": Image.Transpose.ROTATE_90, "rot180": Image.Transpose.ROTATE_180,
    "rot270": Image.Transpose.ROTATE_270, "flip": Image.Transpose.FLIP_LEFT_RIGHT,
}


def class_pixels(image: Image.Image, *, class_size: int, interpolation: str, mean, std) -> torch.Tensor:
    """A class image resized so that ``h * w ~= class_size^2`` (aspect kept): ``Tensor[3, h, w]``."""
    size = size_by_area(image.width, image.height, class_size)
    return to_tensor(resize(image, size, interpolation=interpolation), mean=mean, std=std)


def load_class_images(classes: ClassSpec, *, key: BankKey, mean, std
                      ) -> Tuple[List[str], List[torch.Tensor], List[int], torch.Tensor]:
    """Names, preprocessed entries ``Tensor[3, h, w]`` (augmented copies included), entry labels and the
    entries' colour signatures ``Tensor[K, D]`` (:mod:`os2d.inference.verify`).

    With ``key.trim`` each image's uniform margin is cut away first (:mod:`os2d.data.trim`).
    Raises clear errors for an empty mapping, an empty or non-string class name, a class without
    images, and unreadable or too small images.
    """
    if not isinstance(classes, Mapping):
        raise InvalidTypeError(f"classes must be a mapping of class name -> image(s), got {type(classes).__name__}")
    if len(classes) == 0:
        raise InvalidInputError("no classes given: pass a mapping of class name -> class image(s)")
    names, tensors, labels, colors = [], [], [], []
    for label, (name, images) in enumerate(classes.items()):
        if not isinstance(name, str) or not name.strip():
            raise InvalidInputError(f"class names must be non-empty strings, got {name!r}")
        names.append(name)
        images = list(images) if isinstance(images, (list, tuple)) else [images]
        if not images:
            raise InvalidInputError(f"class {name!r} has no images")
        for image in images:
            pil = load_image(image, what=f"class image for {name!r}")
            check_class_image_size(pil, name=name)
            if key.trim:
                pil = trim_uniform_border(pil)
            for variant in [pil] + [pil.transpose(_TRANSPOSES[a]) for a in key.augment]:
                tensors.append(class_pixels(variant, class_size=key.class_size, interpolation=key.interpolation,
                                            mean=mean, std=std))
                labels.append(label)
                colors.append(color_signature(variant))
    return names, tensors, labels, torch.stack(colors)


@torch.no_grad()
def bank_from_tensors(model: OS2DModel, backbone: Backbone, names: List[str], tensors: List[torch.Tensor],
                      labels: List[int], *, key: BankKey, keep_raw: bool = False,
                      device: torch.device = torch.device("cpu")) -> ClassBank:
    """A bank from preprocessed class images (entry i has class ``labels[i]``).

    ``backbone`` computes the raw feature maps (the model's own backbone or an inference copy);
    :meth:`OS2DModel.embed_class` turns them into ``Tensor[K, C, g, g]`` features.
    """
    raw = [backbone(t.to(device).unsqueeze(0)) for t in tensors]
    features = torch.cat([model.embed_class(fm) for fm in raw], 0)
    # [K, C, g, g]
    extras = {"templates": class_templates(features)}
    raw_normed = [l2_normalize(fm[0], dim=0, eps=model.feature_eps) for fm in raw] if keep_raw else None
    return ClassBank(names=names, entry_labels=torch.tensor(labels, dtype=torch.int64), store=TensorStore(features),
                     key=key, extras=extras, raw_features=raw_normed)

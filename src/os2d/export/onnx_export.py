"""The model as three ONNX graphs with dynamic sizes (``torch.onnx.export``, the ``torch.export`` exporter).

* ``scene_features.onnx``: ``pixels`` ``[1, 3, height, width]`` -> ``features`` ``[1, C, H, W]``;
* ``class_features.onnx``: ``pixels`` ``[1, 3, height, width]`` -> ``class_features`` ``[1, C, g, g]``;
* ``head.onnx``: ``scene_features`` ``[1, C, H, W]``, ``class_features`` ``[K, C, g, g]`` -> ``scores``
  ``[1, K, H, W]``, ``boxes`` ``[1, K, H, W, 4]``, ``corners`` ``[1, K, H, W, 4, 2]``.

The backbone is traced once: its graph (pixels -> raw features) is joined with the small scene and
class embedding graphs (:func:`onnx.compose.merge_models`), so both feature graphs hold the same
backbone nodes. Weights are stored inside each ``.onnx`` file (no external data files).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Dict, Sequence, Tuple

import torch
from torch import nn

from os2d.export.graphs import Embedding, HeadGraph
from os2d.inference.settings import MAX_LEVEL_SIDE
from os2d.model.os2d import OS2DModel

#: ONNX opset of the exported graphs (GridSample needs >= 16; onnxruntime >= 1.14 runs opset 18).
OPSET = 18
#: Smallest and largest side (pixels) of images the feature graphs are exported for.
MIN_IMAGE_SIDE = 16
MAX_IMAGE_SIDE = MAX_LEVEL_SIDE
#: Largest feature map side and number of class entries the head is exported for.
MAX_MAP_SIDE = MAX_IMAGE_SIDE // 16 + 1
MAX_CLASSES = 100_000

SCENE_FILE = "scene_features.onnx"
CLASS_FILE = "class_features.onnx"
HEAD_FILE = "head.onnx"
_RAW = "raw_features"


@dataclass(frozen=True)
class GraphIO:
    """Names and shapes (``int`` or a named dynamic axis) of a graph's inputs and outputs."""

    inputs: Tuple[Tuple[str, Tuple], ...]
    outputs: Tuple[Tuple[str, Tuple], ...]


def graph_io(*, channels: int, grid_size: int) -> Dict[str, GraphIO]:
    """Input and output names and shapes of the three graphs, by file name."""
    c, g = channels, grid_size
    image = ("pixels", (1, 3, "height", "width"))
    return {
        SCENE_FILE: GraphIO(inputs=(image,), outputs=(("features", (1, c, "H", "W")),)),
        CLASS_FILE: GraphIO(inputs=(image,), outputs=(("class_features", (1, c, g, g)),)),
        HEAD_FILE: GraphIO(
            inputs=(("scene_features", (1, c, "H", "W")), ("class_features", ("K", c, g, g))),
            outputs=(("scores", (1, "K", "H", "W")), ("boxes", (1, "K", "H", "W", 4)),
                     ("corners", (1, "K", "H", "W", 4, 2)))),
    }


def onnx_graphs(model: OS2DModel, *, opset: int = OPSET) -> Dict[str, "onnx.ModelProto"]:  # noqa: F821
    """The three graphs of ``model`` (traced in eval mode; the model's mode is restored), by file name."""
    import onnx

    was_training = model.training
    model.eval()
    try:
        graphs = {**_feature_graphs(model, opset=opset), HEAD_FILE: _head_graph(model, opset=opset)}
    finally:
        model.train(was_training)
    for proto in graphs.values():
        onnx.checker.check_model(proto)
    return graphs


def _feature_graphs(model: OS2DModel, *, opset: int) -> dict:
    """The scene and class feature graphs: the backbone (traced once) joined with each embedding."""
    pixels = torch.zeros(1, 3, 320, 480)
    with torch.no_grad():
        raw = model.backbone(pixels)
    image_dims = {2: torch.export.Dim("height", min=MIN_IMAGE_SIDE, max=MAX_IMAGE_SIDE),
                  3: torch.export.Dim("width", min=MIN_IMAGE_SIDE, max=MAX_IMAGE_SIDE)}
    backbone = _to_onnx(model.backbone, (pixels,), ["pixels"], [_RAW], (image_dims,), opset=opset)
    scene = _to_onnx(Embedding(model, kind="scene"), (raw,), [_RAW], ["features"], (_map_dims(),), opset=opset)
    cls = _to_onnx(Embedding(model, kind="class"), (raw,), [_RAW], ["class_features"], (_map_dims(),), opset=opset)
    return {SCENE_FILE: _join(backbone, scene), CLASS_FILE: _join(backbone, cls)}


def _head_graph(model: OS2DModel, *, opset: int):
    """The head graph (:class:`~os2d.export.graphs.HeadGraph`), H, W and K dynamic."""
    c, g = model.backbone.out_channels, model.head.grid_size
    scene_fm = torch.nn.functional.normalize(torch.ones(1, c, 12, 18), dim=1)
    class_fm = torch.nn.functional.normalize(torch.ones(2, c, g, g), dim=1)
    dims = (_map_dims(), {0: torch.export.Dim("K", min=1, max=MAX_CLASSES)})
    return _to_onnx(HeadGraph(model.head), (scene_fm, class_fm), ["scene_features", "class_features"],
                    ["scores", "boxes", "corners"], dims, opset=opset)


def _map_dims() -> dict:
    """Dynamic H and W axes of a feature map ``[1, C, H, W]``."""
    return {2: torch.export.Dim("H", min=1, max=MAX_MAP_SIDE), 3: torch.export.Dim("W", min=1, max=MAX_MAP_SIDE)}


def _to_onnx(module: nn.Module, args: Tuple[torch.Tensor, ...], input_names: Sequence[str],
             output_names: Sequence[str], dynamic_shapes: Tuple[dict, ...], *, opset: int):
    """One module as an ONNX ``ModelProto`` (weights inside), sizes symbolic as in ``dynamic_shapes``."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's notes about its own internals
        program = torch.onnx.export(module, args, None, dynamo=True, input_names=list(input_names),
                                    output_names=list(output_names), dynamic_shapes=dynamic_shapes,
                                    opset_version=opset, verbose=False, optimize=True)
    return program.model_proto


def _join(first, second):
    """``first`` (-> ``raw_features``) followed by ``second`` (``raw_features`` ->): one graph."""
    import onnx.compose

    second = onnx.compose.add_prefix(second, "embed.", rename_inputs=False, rename_outputs=False)
    joined = onnx.compose.merge_models(first, second, io_map=[(_RAW, _RAW)], producer_name="os2d export",
                                       producer_version=first.producer_version)
    return onnx.shape_inference.infer_shapes(joined)

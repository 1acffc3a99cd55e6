"""Options shared by the subcommands (declared once, as annotated types) and their translation into
:class:`~os2d.inference.settings.DetectSettings` fields."""
from __future__ import annotations

import math
from typing import Dict, List, Optional

import typer
from typing_extensions import Annotated

from os2d.errors import InvalidInputError
from os2d.inference.registry import CLI_METHODS, MODES
from os2d.inference.settings import AUGMENTATIONS

Model = Annotated[str, typer.Option("--model", "-m", help="Built-in model (default, untrained), an os2d model folder, or an original-implementation .pth checkpoint.")]
Method = Annotated[str, typer.Option("--method", help=f"Matching method: {', '.join(CLI_METHODS)}.")]
Mode = Annotated[str, typer.Option("--mode", help=f"OS2D mode: {' or '.join(MODES)} (exact: every location; fast: the cascade, for many classes; docs/speed.md).")]
Device = Annotated[str, typer.Option("--device", help="Torch device, e.g. cpu or cuda.")]
Threads = Annotated[Optional[str], typer.Option("--threads", help="Torch threads: a number, or auto (default: the idle cores; 1 on a busy 2-core machine; docs/speed.md).")]
Scales = Annotated[Optional[str], typer.Option("--scales", help="Scene longer side in pixels per pyramid level, e.g. 640,1024,1600 (default: --pyramid).")]
BaseSize = Annotated[Optional[int], typer.Option("--base-size", help="Base scene size of the paper pyramid (0.5..1.6 x base; model default 1280).")]
Pyramid = Annotated[Optional[str], typer.Option("--pyramid", help="Levels without --scales: auto (from each scene's size; os2d models) or paper (0.5..1.6 x --base-size; reference checkpoints).")]
PyramidFrom = Annotated[Optional[str], typer.Option("--pyramid-from", help="Resize every level from the original image (original, default) or from the image resized to --base-size (base, as the reference's evaluation).")]
ClassSize = Annotated[Optional[int], typer.Option("--class-size", help="Class images are resized so that h*w ~= class_size^2 (default 240; at most 1024).")]
Nms = Annotated[Optional[float], typer.Option("--nms", help="IoU threshold of the per-class NMS (default 0.3).")]
NmsMode = Annotated[Optional[str], typer.Option("--nms-mode", help="global (one NMS per class, default) or reference (the original code's chunked NMS, for reproducing published numbers).")]
Threshold = Annotated[Optional[float], typer.Option("--threshold", help="Keep detections scoring above this (-inf keeps all).")]
MaxDets = Annotated[Optional[int], typer.Option("--max-dets", help="Keep at most this many detections per scene.")]
Augment = Annotated[Optional[str], typer.Option("--augment", help=f"Also match transformed class images: comma-separated of {', '.join(AUGMENTATIONS)}.")]
ResizeRule = Annotated[Optional[str], typer.Option("--resize-rule", help="Scene resize rule for --scales: longer-side (evaluation) or area (reference demo: sqrt(h*w)).")]
Interpolation = Annotated[Optional[str], typer.Option("--interpolation", help="Resize filter: bilinear (evaluation) or bicubic (reference demo).")]
Scores = Annotated[Optional[str], typer.Option("--scores", help="calibrated (one meaning for every class; os2d models) or raw (the network's cosine score).")]
OneLabel = Annotated[Optional[bool], typer.Option("--one-label/--all-labels", help="Keep one class per object where boxes of different classes overlap (default: on for os2d models).")]
Trim = Annotated[Optional[bool], typer.Option("--trim/--no-trim", help="Cut a class image's uniform margin (a packshot's white background) away before matching (default: on for os2d models).")]
Shortlist = Annotated[Optional[int], typer.Option("--shortlist", help="Fast mode: classes kept per scene by the shortlist (0: all).")]
Candidates = Annotated[Optional[int], typer.Option("--candidates", help="Fast mode: locations per class entry given to the exact head.")]

#: Setting field -> command-line flag, for error messages.
FLAGS = {"scales": "--scales", "base_size": "--base-size", "pyramid_rule": "--pyramid", "pyramid_from": "--pyramid-from",
         "class_size": "--class-size", "nms_iou": "--nms", "nms_mode": "--nms-mode", "score_threshold": "--threshold",
         "max_detections": "--max-dets", "augment": "--augment", "resize_rule": "--resize-rule",
         "interpolation": "--interpolation", "scores": "--scores", "one_label": "--one-label",
         "trim_class_images": "--trim",
         "cascade.shortlist": "--shortlist", "cascade.candidates": "--candidates"}


def parse_scales(text: Optional[str]) -> Optional[List[float]]:
    """``"640,800,1024"`` -> ``[640.0, 800.0, 1024.0]`` (range checks happen in the settings)."""
    if text is None or text.strip() == "":
        return None
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InvalidInputError(f"--scales must be comma-separated numbers of pixels, got {text!r}") from None


def parse_augment(text: Optional[str]) -> Optional[tuple]:
    return tuple(a.strip() for a in text.split(",") if a.strip()) if text else None


def settings_fields(*, scales=None, base_size=None, pyramid=None, pyramid_from=None, class_size=None, nms=None,
                    nms_mode=None, threshold=None, max_dets=None, augment=None, resize_rule=None, interpolation=None,
                    scores=None, one_label=None, shortlist=None, candidates=None, trim=None) -> Dict[str, object]:
    """Command-line option values -> :class:`DetectSettings` fields (``None`` = the model's default)."""
    if threshold is not None and math.isnan(threshold):
        raise InvalidInputError("--threshold must be a number (or -inf), got nan")
    cascade = {k: v for k, v in (("shortlist", shortlist), ("candidates", candidates)) if v is not None}
    fields = {"scales": parse_scales(scales), "base_size": base_size, "pyramid_rule": pyramid,
              "pyramid_from": pyramid_from, "class_size": class_size, "nms_iou": nms, "nms_mode": nms_mode,
              "score_threshold": threshold, "max_detections": max_dets, "augment": parse_augment(augment),
              "resize_rule": resize_rule, "interpolation": interpolation, "scores": scores, "one_label": one_label,
              "trim_class_images": trim}
    fields = {k: v for k, v in fields.items() if v is not None}
    if cascade:
        fields["cascade"] = cascade
    return fields


def flag_message(err: Exception) -> str:
    """A settings error with the field names replaced by their command-line flags."""
    text = str(err)
    for field, flag in sorted(FLAGS.items(), key=lambda kv: -len(kv[0])):
        text = text.replace(f"invalid setting {field}=", f"invalid {flag} ")
    return text

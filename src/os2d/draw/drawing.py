"""Drawing detections so that a person can read them.

One box per detection in its class colour, one label per box (``"name 0.87"``, with the runner-up
class of one-label suppression when present: ``"choco 0.81 (berry 0.62)"``), labels placed by
:func:`os2d.draw.layout.place_labels` so that they never overlap each other and avoid other boxes,
and a legend of the classes drawn (colour, name, count).

Canvas: the image keeps its pixel coordinates (origin top left). The legend goes in a corner of
the image that covers no box; when there is none, a white strip is added *below* the image for it.
Labels always stay inside the image. Font size and line width follow the image's longer side.
Font: DejaVu Sans when the system has it (wide Unicode coverage), else Pillow's built-in
scalable font (Latin only).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from os2d.data.images import ImageLike, load_image
from os2d.draw.colors import class_color, text_color
from os2d.draw.layout import LabelPlacement, LegendLayout, layout_legend, place_labels
from os2d.errors import InputNotFoundError, InvalidInputError, InvalidTypeError
from os2d.fileio import atomic_write
from os2d.structures import Detections

logger = logging.getLogger(__name__)

#: Drawing file suffixes and the Pillow format each is written in.
SUFFIX_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP",
                  ".tif": "TIFF", ".tiff": "TIFF"}
#: Scalable fonts tried first (Pillow searches the system font folders).
FONT_FILES = ("DejaVuSans.ttf",)
#: Class names longer than this are shortened in labels and the legend.
MAX_NAME_CHARS = 40

Font = Union[ImageFont.FreeTypeFont, ImageFont.ImageFont]


def check_drawing_path(path: Union[str, Path]) -> Path:
    """Check that a drawing can be written to ``path`` (known image suffix, existing folder).

    Raises :class:`InvalidInputError` for an unknown suffix or a folder given as the path and
    :class:`InputNotFoundError` when the parent folder does not exist; writes nothing.
    """
    path = Path(path)
    fmt = SUFFIX_FORMATS.get(path.suffix.lower())
    Image.init()
    if fmt is None or fmt not in Image.SAVE:
        known = sorted(s for s, f in SUFFIX_FORMATS.items() if f in Image.SAVE)
        raise InvalidInputError(f"drawing {str(path)!r}: unknown image suffix {path.suffix!r}; use one of {known}")
    if path.is_dir():
        raise InvalidInputError(f"drawing {str(path)!r} is a folder, expected an image file name")
    if not path.parent.is_dir():
        raise InputNotFoundError(f"folder for the drawing does not exist: {path.parent}")
    return path


@dataclass(frozen=True)
class DrawStyle:
    """Sizes in pixels: text size, box line width, padding inside labels."""

    font_size: int
    line_width: int
    pad: int

    @classmethod
    def for_image(cls, size: Tuple[int, int], *, font_size: Optional[int] = None,
                  line_width: Optional[int] = None) -> "DrawStyle":
        """Sizes that follow the image's longer side (15 px text on a 685 px photo, at most 72)."""
        longer = max(size)
        font = font_size if font_size is not None else int(np.clip(round(longer / 45), 11, 72))
        line = line_width if line_width is not None else max(2, round(longer / 350))
        if font < 1 or line < 1:
            raise InvalidInputError(f"font size and line width must be >= 1, got {font} and {line}")
        return cls(font_size=font, line_width=line, pad=max(2, round(font * 0.3)))

    def fitted(self, label_widths: Sequence[float], box_widths: Sequence[float], *, longer: int) -> "DrawStyle":
        """A smaller font when the median label is wider than 1.25 median boxes (dense scenes).

        Text width grows linearly with the font size; the font does not go below
        ``max(10, longer / 110)`` pixels.
        """
        if not len(label_widths) or not len(box_widths):
            return self
        ratio = 1.25 * float(np.median(box_widths)) / max(float(np.median(label_widths)), 1e-9)
        if ratio >= 1:
            return self
        floor = min(self.font_size, max(10, round(longer / 110)))
        font = max(floor, int(self.font_size * ratio))
        return DrawStyle(font_size=font, line_width=self.line_width, pad=max(2, round(font * 0.3)))


def load_font(size: int) -> Font:
    """A scalable font of ``size`` pixels (see the module docstring)."""
    for name in FONT_FILES:
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


def short_name(name: str) -> str:
    """``name`` cut to :data:`MAX_NAME_CHARS` characters (an ellipsis marks the cut)."""
    return name if len(name) <= MAX_NAME_CHARS else name[: MAX_NAME_CHARS - 1] + "\u2026"


def label_texts(detections: Detections, *, runner_up: bool = True) -> List[str]:
    """One label per detection: ``"name 0.87"``, or ``"name 0.87 (other 0.62)"`` with a runner-up."""
    names = [short_name(n) for n in detections.names]
    texts = [f"{n} {s:.2f}" for n, s in zip(names, detections.scores.tolist())]
    extra = detections.extra
    if not runner_up or "runner_up_label" not in extra or "runner_up_score" not in extra:
        return texts
    for i, (lab, score) in enumerate(zip(extra["runner_up_label"].tolist(), extra["runner_up_score"].tolist())):
        if 0 <= int(lab) < len(detections.class_names):
            texts[i] += f" ({short_name(detections.class_names[int(lab)])} {score:.2f})"
    return texts


@dataclass(frozen=True)
class DrawingLayout:
    """Everything :func:`render_drawing` needs besides the pixels."""

    canvas_size: Tuple[int, int]
    boxes: np.ndarray  # [N, 4] boxes clipped to the image
    texts: List[str]
    labels: List[Optional[LabelPlacement]]
    legend: Optional[LegendLayout]
    legend_items: List[Tuple[int, str]]  # (class index, text) per legend entry


def _text_size(font: Font, text: str) -> Tuple[float, float]:
    left, _, right, _ = font.getbbox(text)
    top, bottom = _line_extent(font)
    return float(right - left), float(bottom - top)


def _line_extent(font: Font) -> Tuple[int, int]:
    _, top, _, bottom = font.getbbox("Ag|\u00c9")
    return top, bottom


def layout_drawing(detections: Detections, image_size: Tuple[int, int], *, style: DrawStyle, font: Font,
                   legend: bool = True, max_labels: Optional[int] = None, runner_up: bool = True) -> DrawingLayout:
    """Label rectangles, leader lines and legend for ``detections`` on an image of ``image_size``."""
    width, height = image_size
    boxes = detections.boxes.detach().cpu().double().numpy().reshape(-1, 4)  # [N, 4]
    boxes = np.clip(boxes, 0, [width, height, width, height])
    texts = label_texts(detections, runner_up=runner_up)
    sizes = np.array([_text_size(font, t) for t in texts], dtype=np.float64).reshape(-1, 2)  # [N, 2]
    sizes += 2 * np.array([style.pad, style.pad * 0.5])
    order = np.argsort(-detections.scores.detach().cpu().numpy(), kind="stable").tolist()
    if max_labels is not None:
        order = order[:max_labels]
    labels = detections.labels.tolist()
    counts = {c: labels.count(c) for c in sorted(set(labels))}
    items = [(c, f"{short_name(detections.class_names[c])} ({n})") for c, n in counts.items()]
    legend_layout = None
    if legend and items:
        line_h = _text_size(font, "A")[1]
        entry_sizes = [(line_h + style.pad + _text_size(font, t)[0], line_h) for _, t in items]
        legend_layout = layout_legend(np.array(entry_sizes), boxes, (width, height), pad=style.pad,
                                      gap=style.pad * 0.6)
    obstacles = np.array([legend_layout.rect]) if legend_layout and not legend_layout.in_strip else None
    placements = place_labels(boxes, sizes, (0.0, 0.0, float(width), float(height)), order=order,
                              obstacles=obstacles, spacing=1.0)
    missing = len(order) - sum(p is not None for p in placements)
    if missing:
        logger.info("%d of %d labels found no free spot and were left out", missing, len(order))
    canvas = legend_layout.canvas_size if legend_layout else (width, height)
    return DrawingLayout(canvas, boxes, texts, placements, legend_layout, items)


def _draw_text(draw: ImageDraw.ImageDraw, xy: Tuple[float, float], text: str, font: Font, fill) -> None:
    top, _ = _line_extent(font)
    left = font.getbbox(text)[0]
    draw.text((xy[0] - left, xy[1] - top), text, font=font, fill=fill)


def _draw_legend(draw: ImageDraw.ImageDraw, legend: LegendLayout, items: Sequence[Tuple[int, str]],
                 style: DrawStyle, font: Font) -> None:
    draw.rectangle(legend.rect, fill=(255, 255, 255), outline=None if legend.in_strip else (90, 90, 90), width=1)
    for (cls, text), (x1, y1, _, y2) in zip(items, legend.entries):
        side = y2 - y1
        draw.rectangle((x1, y1, x1 + side, y2), fill=class_color(cls), outline=(40, 40, 40), width=1)
        _draw_text(draw, (x1 + side + style.pad, y1), text, font, (0, 0, 0))


def render_drawing(image: Image.Image, detections: Detections, layout: DrawingLayout, *, style: DrawStyle,
                   font: Font) -> Image.Image:
    """Paint boxes (best on top), leader lines, labels and the legend on a copy of ``image``."""
    canvas = Image.new("RGB", layout.canvas_size, (255, 255, 255))
    canvas.paste(image, (0, 0))
    draw = ImageDraw.Draw(canvas)
    labels = detections.labels.tolist()
    by_score = np.argsort(detections.scores.detach().cpu().numpy(), kind="stable").tolist()
    for i in by_score:  # lowest first, so the best boxes are painted last; a dark rim keeps them visible
        x1, y1, x2, y2 = layout.boxes[i]
        draw.rectangle((x1 - 1, y1 - 1, x2 + 1, y2 + 1), outline=(20, 20, 20), width=style.line_width + 2)
        draw.rectangle((x1, y1, x2, y2), outline=class_color(labels[i]), width=style.line_width)
    for i, place in enumerate(layout.labels):
        if place is not None and place.leader is not None:
            color = class_color(labels[i])
            draw.line(place.leader, fill=color, width=max(2, style.line_width // 2))
            r, (xb, yb) = style.line_width, place.leader[2:]
            draw.ellipse((xb - r, yb - r, xb + r, yb + r), fill=color)  # a dot where the line meets the box
    for i, place in enumerate(layout.labels):
        if place is not None:
            color = class_color(labels[i])
            draw.rectangle(place.rect, fill=color)
            _draw_text(draw, (place.rect[0] + style.pad, place.rect[1] + style.pad * 0.5), layout.texts[i], font,
                       text_color(color))
    if layout.legend is not None:
        _draw_legend(draw, layout.legend, layout.legend_items, style, font)
    return canvas


def _check_detections(detections, size: Tuple[int, int]) -> None:
    if not isinstance(detections, Detections):
        raise InvalidTypeError(f"expected Detections, got {type(detections).__name__}")
    if tuple(detections.image_size) not in ((0, 0), tuple(size)):
        raise InvalidInputError(f"detections are for an image of size {tuple(detections.image_size)}, "
                                f"the image to draw on is {tuple(size)}")
    if len(detections) and not bool(detections.boxes.isfinite().all()):
        raise InvalidInputError("detections hold non-finite box coordinates")
    bad = [lab for lab in detections.labels.tolist() if not 0 <= lab < len(detections.class_names)]
    if bad:
        raise InvalidInputError(f"detection labels {bad[:5]} are not indices of the "
                                f"{len(detections.class_names)} class names")


def draw_detections(image: ImageLike, detections: Detections, path: Optional[Union[str, Path]] = None, *,
                    legend: bool = True, max_labels: Optional[int] = None, runner_up: bool = True,
                    font_size: Optional[int] = None, line_width: Optional[int] = None) -> Image.Image:
    """Draw ``detections`` on ``image``; write it to ``path`` (atomically) when given.

    Args:
        image: the scene (path, PIL image or array), the one the detections were computed on.
        detections: boxes in the image's pixels.
        path: output file; its suffix picks the format (:data:`SUFFIX_FORMATS`); checked before
            any work (:func:`check_drawing_path`). An existing file is replaced atomically.
        legend: add the legend of class colours.
        max_labels: label only this many best-scoring boxes (all boxes are drawn).
        runner_up: show the runner-up class of one-label suppression when ``detections.extra`` has it.
        font_size, line_width: override the sizes that follow the image size.

    Returns:
        the drawing (RGB; the image at the top left, possibly with a legend strip below it).
    """
    target = check_drawing_path(path) if path is not None else None
    if max_labels is not None and max_labels < 0:
        raise InvalidInputError(f"max_labels must be >= 0, got {max_labels}")
    pil = load_image(image, what="scene image")
    _check_detections(detections, pil.size)
    style = DrawStyle.for_image(pil.size, font_size=font_size, line_width=line_width)
    font = load_font(style.font_size)
    if font_size is None and len(detections):
        widths = [_text_size(font, t)[0] + 2 * style.pad for t in label_texts(detections, runner_up=runner_up)]
        box_widths = (detections.boxes[:, 2] - detections.boxes[:, 0]).tolist()
        fitted = style.fitted(widths, box_widths, longer=max(pil.size))
        if fitted != style:
            style, font = fitted, load_font(fitted.font_size)
    layout = layout_drawing(detections, pil.size, style=style, font=font, legend=legend, max_labels=max_labels,
                            runner_up=runner_up)
    canvas = render_drawing(pil, detections, layout, style=style, font=font)
    if target is not None:
        fmt = SUFFIX_FORMATS[target.suffix.lower()]
        options = {"quality": 92} if fmt in ("JPEG", "WEBP") else {}
        atomic_write(target, lambda tmp: canvas.save(tmp, format=fmt, **options))
        logger.info("wrote a drawing of %d detections to %s", len(detections), target)
    return canvas

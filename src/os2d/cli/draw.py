"""Drawing labelled detection boxes on scene images."""
from __future__ import annotations

import colorsys
from pathlib import Path

from PIL import ImageDraw, ImageFont

from os2d.data.images import ImageLike, load_image
from os2d.structures import Detections


def class_color(index: int) -> tuple:
    """A distinct saturated colour per class index."""
    r, g, b = colorsys.hsv_to_rgb((index * 0.618033988749895) % 1.0, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_detections(image: ImageLike, detections: Detections, path: Path) -> None:
    """Write ``image`` with a labelled box per detection to ``path`` (format from the suffix)."""
    canvas = load_image(image, what="scene image").copy()
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    width = max(2, round(max(canvas.size) / 400))
    for box, score, label in zip(detections.boxes.tolist(), detections.scores.tolist(),
                                 detections.labels.tolist()):
        color = class_color(label)
        draw.rectangle(box, outline=color, width=width)
        text = f"{detections.class_names[label]} {score:.2f}"
        left, top, right, bottom = draw.textbbox((box[0], box[1]), text, font=font)
        y = box[1] - (bottom - top) - 2 if box[1] - (bottom - top) - 2 >= 0 else box[1]
        draw.rectangle([box[0], y, box[0] + (right - left) + 4, y + (bottom - top) + 2], fill=color)
        draw.text((box[0] + 2, y), text, fill=(0, 0, 0), font=font)
    canvas.save(path)

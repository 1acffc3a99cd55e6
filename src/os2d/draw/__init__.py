"""Drawings of detections a person can read, and one crop per detection.

- :func:`draw_detections` boxes, non-overlapping labels, legend; writes PNG/JPEG/... atomically.
- :func:`check_drawing_path` validate an output path before any computation.
- :func:`save_crops` one PNG per detection with safe, unique names.
- :func:`class_color` the colour of a class index.
"""
from os2d.draw.colors import class_color, text_color
from os2d.draw.crops import save_crops
from os2d.draw.drawing import SUFFIX_FORMATS, check_drawing_path, draw_detections

__all__ = ["SUFFIX_FORMATS", "check_drawing_path", "class_color", "draw_detections", "save_crops", "text_color"]

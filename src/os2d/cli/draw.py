"""Kept for older imports: the drawing code lives in :mod:`os2d.draw`."""
from os2d.draw import check_drawing_path, class_color, draw_detections, save_crops

__all__ = ["check_drawing_path", "class_color", "draw_detections", "save_crops"]

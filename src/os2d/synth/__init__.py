"""Synthetic training scenes: class images pasted on backgrounds, written in the OS2D CSV layout."""
from os2d.synth.compose import (
    BackgroundPool,
    ClassImage,
    ObjectPatch,
    Scene,
    SceneObject,
    compose_scene,
    foreground_mask,
    load_class_image,
    scene_rng,
    transform_object,
)
from os2d.synth.config import MASK_MODES, SynthConfig
from os2d.synth.writer import (
    CSV_COLUMNS,
    SynthSummary,
    collect_images,
    generate_dataset,
)

__all__ = [
    "BackgroundPool",
    "CSV_COLUMNS",
    "ClassImage",
    "MASK_MODES",
    "ObjectPatch",
    "Scene",
    "SceneObject",
    "SynthConfig",
    "SynthSummary",
    "collect_images",
    "compose_scene",
    "foreground_mask",
    "generate_dataset",
    "load_class_image",
    "scene_rng",
    "transform_object",
]

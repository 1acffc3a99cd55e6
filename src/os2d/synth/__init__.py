"""Synthetic training scenes: class images pasted on backgrounds, written in the OS2D CSV layout."""
from os2d.synth.compose import (
    BackgroundPool,
    Scene,
    SceneObject,
    compose_scene,
    scene_rng,
)
from os2d.synth.config import LAYOUTS, MASK_MODES, ShelfConfig, SynthConfig
from os2d.synth.objects import (
    ClassImage,
    ClassSource,
    ObjectPatch,
    foreground_mask,
    load_class_image,
    pick_appearance,
    transform_object,
)
from os2d.synth.shelf import compose_shelf_scene
from os2d.synth.sources import load_appearance, read_class_table, sources_from_images
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
    "ClassSource",
    "LAYOUTS",
    "MASK_MODES",
    "ObjectPatch",
    "Scene",
    "SceneObject",
    "ShelfConfig",
    "SynthConfig",
    "SynthSummary",
    "collect_images",
    "compose_scene",
    "compose_shelf_scene",
    "foreground_mask",
    "generate_dataset",
    "load_appearance",
    "load_class_image",
    "pick_appearance",
    "read_class_table",
    "scene_rng",
    "sources_from_images",
    "transform_object",
]

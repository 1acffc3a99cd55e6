"""The export manifest's class-trim spec: present exactly when the model trims, and equal to the library's rule."""
from __future__ import annotations

from os2d.data import trim
from os2d.data.preprocess import MIN_CLASS_IMAGE_SIDE
from os2d.export.manifest import ExportManifest, build_manifest
from os2d.model.identity import model_identity
from os2d.zoo import load_model


def manifest_of(name: str) -> ExportManifest:
    model, config = load_model(name)
    return build_manifest(model, config, identity=model_identity(model, config), graphs=[], opset=18)


def test_default_model_manifest_gives_the_trim_rule():
    spec = manifest_of("default").preprocessing.class_trim
    assert spec is not None
    assert (spec.tolerance, spec.uniform, spec.line, spec.min_content, spec.keep, spec.min_side) == (
        trim.TRIM_TOLERANCE, trim.TRIM_UNIFORM, trim.TRIM_LINE, trim.TRIM_MIN_CONTENT, trim.TRIM_KEEP,
        MIN_CLASS_IMAGE_SIDE)


def test_untrimmed_model_manifest_has_no_trim_and_round_trips():
    manifest = manifest_of("untrained")
    assert manifest.preprocessing.class_trim is None
    assert ExportManifest.model_validate_json(manifest.model_dump_json()) == manifest

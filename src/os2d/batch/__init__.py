"""Batch inference: many scene images, results streamed to JSON lines, resumable, in parallel.

* :func:`os2d.batch.inputs.expand_images` -- files, folders and glob patterns -> image paths;
* :class:`os2d.batch.jsonl.JsonlWriter` -- one line per image, flushed, ``resume`` skips done images;
* :func:`os2d.batch.runner.run_batch` -- in this process, in ``workers`` local processes, or on a
  Ray cluster, with identical results.
"""
from os2d.batch.inputs import expand_images
from os2d.batch.jsonl import JsonlWriter, read_jsonl
from os2d.batch.runner import BatchJob, run_batch

__all__ = ["BatchJob", "JsonlWriter", "expand_images", "read_jsonl", "run_batch"]

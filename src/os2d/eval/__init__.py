"""Evaluation: reference VOC AP, episodic AP, detections JSON and dataset evaluation runner."""

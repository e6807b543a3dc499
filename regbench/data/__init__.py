"""Datasets as tensors on the device, and their paired splits."""

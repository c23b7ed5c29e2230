"""A virtual lab of qemu VMs that look like fresh DGX Sparks (`python -m lab --help`)."""

from .state import api_key_path, image_cache_dir, lab_nodes, state_dir

__all__ = ["api_key_path", "image_cache_dir", "lab_nodes", "state_dir"]

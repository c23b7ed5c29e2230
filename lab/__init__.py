"""A virtual lab of qemu VMs that look like fresh DGX Sparks (`python -m lab --help`)."""

from .state import image_cache_dir, lab_nodes, state_dir

__all__ = ["image_cache_dir", "lab_nodes", "state_dir"]

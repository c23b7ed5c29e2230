"""Loading a program shipped as a file (to a node or into a container) as a
module, so the unit tests call the very code the node runs."""

import importlib.util
from pathlib import Path


def load_source(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

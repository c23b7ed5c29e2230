"""Files rendered from Jinja templates, the same way in every role (pure)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import jinja2


def render_template(template: Path, context: Mapping[str, Any]) -> str:
    """The file as it lands on the node: roles upload exactly this text (and
    compare its checksum with the node's), so tests see what nodes get.

    A variable the context lacks is an error, never an empty string; block
    tags take their own line's newline and indentation with them; the file
    keeps its final newline. No HTML escaping: these are config files.
    """
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template.parent)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    return environment.get_template(template.name).render(**context)

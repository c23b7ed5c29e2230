"""What to copy where: pure decisions from every node's facts."""

from __future__ import annotations

# The image id of a lab stand-in that its source builds later in this run.
BUILT_THIS_RUN = "built on the source in this run"


def model_cache_dir(hf_home: str, model: str) -> str:
    """Where the Hugging Face hub keeps `org/name` under HF_HOME."""
    return f"{hf_home}/hub/models--{model.replace('/', '--')}"


def needs_copy(source_value, own_value) -> bool:
    """Copy only what the source has and this node lacks or holds differently."""
    return source_value is not None and own_value != source_value

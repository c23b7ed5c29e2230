"""Where the engine caches live on the host and where the engine expects them.

The single source for the caches role's directories and the serving role's
`-v` flags and cache variables, so a cache directory that the caches role
creates is always the one that is mounted (distribute copies the model into
the Hugging Face cache).
Without these mounts every restart recompiles for minutes and can wedge.
"""

from __future__ import annotations

# Cache name -> path inside the container. The container runs as root, so each
# engine's default location under /root is what it writes to.
ENGINE_CACHES = {
    "vllm": "/root/.cache/vllm",
    "triton": "/root/.triton/cache",
    "flashinfer": "/root/.cache/flashinfer",
    "torch": "/root/.cache/torch",
    "tilelang": "/root/.tilelang/cache",
}


def cache_root(home: str) -> str:
    return f"{home.rstrip('/')}/.cache/spark-cluster"


def engine_cache_dirs(home: str) -> dict[str, str]:
    """Cache name -> host directory."""
    return {name: f"{cache_root(home)}/{name}" for name in ENGINE_CACHES}


def hf_home(home: str) -> str:
    return f"{home.rstrip('/')}/.cache/huggingface"


def cache_mounts(home: str) -> list[tuple[str, str]]:
    """(host path, container path) pairs, the Hugging Face cache last.

    The HF cache's snapshots are absolute symlinks into the host path, so it is
    mounted at the SAME path inside; anywhere else they dangle and the engine
    reports an "invalid repository ID".
    """
    host_dirs = engine_cache_dirs(home)
    mounts = [(host_dirs[name], container) for name, container in ENGINE_CACHES.items()]
    mounts.append((hf_home(home), hf_home(home)))
    return mounts


def cache_env(home: str) -> dict[str, str]:
    """Variables that point the engine at the mounted caches.

    TORCHINDUCTOR_CACHE_DIR defaults to /tmp/torchinductor_<user>, outside any
    mount, so it is set. TILELANG_CACHE_DIR is TileLang's own variable
    (tilelang/env.py, default ~/.tilelang/cache): set to the same place so an
    image that moves the default still lands on the mount. vLLM, Triton and
    FlashInfer default to the mounted paths already.
    """
    return {
        "HF_HOME": hf_home(home),
        "TORCHINDUCTOR_CACHE_DIR": f"{ENGINE_CACHES['torch']}/inductor",
        "TILELANG_CACHE_DIR": ENGINE_CACHES["tilelang"],
    }

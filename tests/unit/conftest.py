"""Fixtures several unit-test files share."""

import pytest


@pytest.fixture
def cluster_key_store(tmp_path, monkeypatch):
    """The controller's folder for cluster SSH keys (roles/ssh/keys.py), fresh for each
    test; keys.py caches what it made, so the cache is cleared on both sides."""
    from roles.ssh import keys

    store = tmp_path / "controller"
    monkeypatch.setenv(keys.STATE_DIR_ENV, str(store))
    keys._ensure.cache_clear()
    yield store
    keys._ensure.cache_clear()

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


@pytest.fixture(autouse=True)
def copy_figures_stay_in_the_test(monkeypatch):
    """Copies a unit test records (copy_report.record) go to a store of that test's
    own, so the run does not end with a "Copies over QSFP" summary of fake figures."""
    from spark_cluster import copy_report

    monkeypatch.setattr(copy_report, "_REPORTS", {})

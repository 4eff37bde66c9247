"""A truncated data.mdb (a full disk, a partial copy from a backup): LMDB maps the size its meta page records,
so reading a page beyond the end of the shorter file raises SIGBUS. tunneld, tunnelctl and nginx must answer with
a clear error instead of dying of a signal (and nginx's workers must not crash-loop)."""
import os
import shutil

import pytest

from hostile_harness import scraping, stack  # noqa: F401 (fixtures)
from test_hostile_registry import DECLARED, assert_declared_intact, assert_everyone_refuses_clearly  # noqa: F401


@pytest.fixture
def broken(workdir):
    import nginx_harness as h
    registry = h.Registry(os.path.join(workdir, "registry"))
    for name in DECLARED:
        registry.add(name)
    yield registry


def test_truncated_data_mdb_is_refused_without_a_crash(stack, scraping, broken, procs, workdir):
    data = os.path.join(broken.path, "data.mdb")
    shutil.copy2(data, data + ".bak")
    os.truncate(data, 5000)  # the meta pages survive, the b-tree pages they point to do not
    assert_everyone_refuses_clearly(stack, broken, procs, workdir, ["is truncated"])
    os.replace(data + ".bak", data)
    assert_declared_intact(broken)

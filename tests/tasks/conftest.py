from __future__ import annotations

import pytest

from tests.serve.fdr import fdr_run_dir


@pytest.fixture(scope="session")
def fdr_run(tmp_path_factory):
    return fdr_run_dir(tmp_path_factory)

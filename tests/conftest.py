import os
from pathlib import Path

import pytest
import torch

ARCHIVE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-jpeg.tar.gz"


@pytest.fixture(autouse=True)
def _quiet_and_deterministic(monkeypatch, tmp_path_factory):
    torch.manual_seed(0)
    monkeypatch.setenv("PAPERLIB_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def archive() -> Path:
    """The JPEG archive at ../shared/data, or skip."""
    path = Path(os.environ.get("PAPERLIB_TEST_ARCHIVE", ARCHIVE))
    if not path.is_file():
        pytest.skip(f"the CIFAR-10 JPEG archive is not at {path} (set PAPERLIB_TEST_ARCHIVE to run this test)")
    return path

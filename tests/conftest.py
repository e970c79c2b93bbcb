from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared_data(name: str) -> Path:
    """A folder of ../shared/data, or skip with a clear reason where it is absent (a user's machine)."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} is not present (the shared real-data folder is only on project machines)")
    return path


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session decodes image folders into its own cache, never the user's."""
    monkeypatch.setenv("ROBUSTRAIN_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))

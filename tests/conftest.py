from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared_data(name: str) -> Path:
    """A folder of ../shared/data, or skip with a clear reason where it is absent (a user's machine)."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} is not present (the shared real-data folder is only on project machines)")
    return path


def pytest_collection_modifyitems(items):
    """The modules with slow tests first (otherwise in their order): `make test` runs whole modules on
    every core (pytest-xdist, --dist loadfile, in this order), so the long ones start early and the
    short ones fill the end instead of one long module running alone."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session decodes image folders into its own cache, never the user's."""
    monkeypatch.setenv("ROBUSTRAIN_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def train_digits_model():
    """The attack tests' digits model (bench/autoattack_reference.py, where the reference numbers use it too)."""
    return load_bench_script("autoattack_reference").train_digits_model()


def load_bench_script(name: str):
    """A script of bench/ as a module (bench/ is not a package)."""
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[1] / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module

"""One registry shape: registration next to the definition, one-sentence errors, every list the CLI shows."""

import pytest

from robustrain.attacks.registry import ATTACKS
from robustrain.cli import main
from robustrain.corruptions import CORRUPTIONS
from robustrain.data import DATASETS
from robustrain.errors import ConfigError, DataError
from robustrain.evaluate import SUITES
from robustrain.methods import METHODS
from robustrain.models import MODELS
from robustrain.registry import Registry
from robustrain.train.schedules import SCHEDULES


def test_entries_register_by_decorator_and_unknown_names_are_one_sentence():
    things = Registry("thing", DataError)

    @things.register()
    class Named:
        name = "named"

    @things.register("renamed")
    def function():
        return 1

    things.add("value", 3)
    assert things.names() == ["named", "renamed", "value"] and things.get("named") is Named
    assert things["renamed"]() == 1 and "value" in things and len(things) == 3
    expected = r"^unknown thing 'nope'; available things are \['named', 'renamed', 'value'\]\.$"
    with pytest.raises(DataError, match=expected):
        things.get("nope")
    with pytest.raises(ValueError, match="registered twice"):
        things.add("value", 4)


@pytest.mark.parametrize("registry, expected", [
    (MODELS, {"small_cnn", "resnet20", "preact_resnet18", "wrn34_10", "resnet50"}),
    (METHODS, {"standard", "pgd_at", "trades", "fast_at", "oat", "adcorda", "auxiliary", "augmix", "ews"}),
    (DATASETS, {"cifar10", "cifar100", "digits", "fashion_mnist", "imagefolder", "mnist", "shards", "svhn",
                "tinyimagenet"}),
    (SCHEDULES, {"constant", "multistep", "cosine", "onecycle", "slow_start_fast_decay", "piecewise"}),
    (SUITES, {"quick", "standard", "corruptions", "full"}),
    (ATTACKS, {"fgsm", "pgd20", "autoattack"}),
    (CORRUPTIONS, {"gaussian_noise", "glass_blur", "snow", "jpeg_compression", "spatter"}),
])
def test_every_list_is_one_registry_and_robustrain_list_shows_it(registry, expected, capsys):
    assert isinstance(registry, Registry) and expected <= set(registry)
    assert main(["list"]) == 0
    shown = capsys.readouterr().out
    assert all(name in shown for name in registry)
    with pytest.raises((ConfigError, DataError, ValueError), match=f"unknown {registry.kind} 'nope'"):
        registry.get("nope")

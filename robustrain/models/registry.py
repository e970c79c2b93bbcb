"""The model registry: one constructor per name, options typed by the constructor."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from functools import partial

from ..nn import LambdaCodes, NormSpec
from ..nn.quantize import check_bits
from ..nn.slimmable import check_widths
from ..registry import Registry
from .base import Classifier
from .resnet import Bottleneck, BasicBlock, CifarResNet, PreActResNet, ResNet, WideResNet
from .small import SmallCNN

# Used when the caller gives no statistics; datasets supply their own (see data.DatasetInfo).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

MODELS: Registry[Callable[..., Classifier]] = Registry("model", ValueError)
"""Every model constructor, by name; its keyword options are the constructor's own (typed by its signature)."""
MODELS.add("resnet18", partial(ResNet, BasicBlock, (2, 2, 2, 2)))
MODELS.add("resnet34", partial(ResNet, BasicBlock, (3, 4, 6, 3)))
MODELS.add("resnet50", partial(ResNet, Bottleneck, (3, 4, 6, 3)))
MODELS.add("preact_resnet18", partial(PreActResNet, (2, 2, 2, 2)))
MODELS.add("wrn16_8", partial(WideResNet, 16, 8))
MODELS.add("wrn28_10", partial(WideResNet, 28, 10))
MODELS.add("wrn34_10", partial(WideResNet, 34, 10))
MODELS.add("wrn40_2", partial(WideResNet, 40, 2))
MODELS.add("resnet20", partial(CifarResNet, 20))
MODELS.add("resnet56", partial(CifarResNet, 56))
MODELS.add("small_cnn", SmallCNN)


def common_options(num_routes: int | None = None, lambdas: Sequence[float] | None = None, encoding: str = "rand",
                   encoding_dim: int = 128, dual_bn: bool = True, film_residual: bool = False,
                   widths: Sequence[float] | None = None,
                   weight_bits: int | None = None) -> tuple[NormSpec, LambdaCodes | None, int | None]:
    """The options every registered model has, as (NormSpec, λ codes, weight bits).

    num_routes: BatchNorm branches per site, chosen per sample by `Condition.route` (default 1,
        or 2 for an OAT model with dual BN).
    lambdas: OAT's grid Λ; given, the model is conditioned on λ: a FiLM layer after every
        main-path BN, fed `encoding` ("rand", "onehot", "dct" of `encoding_dim` dimensions, or
        "scalar"), and dual BN (route 0 for λ = 0, route 1 otherwise) unless dual_bn is False.
    film_residual: FiLM as h * (1 + Δmu) + Δsigma instead of the OAT code's h * mu + sigma.
    widths: OATS' sub-network width multipliers (must include 1.0); every BN site keeps its own
        branches per width.
    weight_bits: compute with k-bit symmetric per-channel quantized weights (k = 2..8) in every
        convolution and linear layer, trained through the straight-through estimator.
    """
    codes = LambdaCodes(lambdas, encoding, encoding_dim, dual_bn) if lambdas is not None else None
    if codes is None and (encoding, encoding_dim, dual_bn, film_residual) != ("rand", 128, True, False):
        raise ValueError("encoding, encoding_dim, dual_bn and film_residual configure λ conditioning; give `lambdas` "
                         "too.")
    routes = codes.num_routes if codes is not None else 1
    if num_routes is not None and codes is not None and num_routes != routes:
        raise ValueError(f"num_routes {num_routes} contradicts dual_bn={dual_bn} of the λ conditioning "
                         f"(which needs {routes}); leave num_routes out.")
    spec = NormSpec(num_routes if num_routes is not None else routes, check_widths(widths or (1.0,)),
                    codes.dim if codes is not None else 0, film_residual)
    return spec, codes, check_bits(weight_bits) if weight_bits is not None else None


COMMON_OPTIONS = inspect.signature(common_options).parameters


def list_models() -> list[str]:
    return sorted(MODELS)


def model_options(name: str) -> dict[str, inspect.Parameter]:
    """The keyword options `create_model(name, ...)` accepts beyond the common ones: the
    constructor's own and the options every model has (see `common_options`)."""
    params = inspect.signature(_lookup(name)).parameters.values()
    given = ("num_classes", "mean", "std", "norm", "lambda_codes", "weight_bits")  # by create_model
    own = {p.name: p for p in params if p.name not in given}
    return {**own, **COMMON_OPTIONS}


def create_model(name: str, num_classes: int, *, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, **options) -> Classifier:
    """Build a registered model that takes images in [0, 1].

    mean/std: per-channel input statistics; CIFAR-10's when omitted (RGB only).
    options: the constructor's own keyword options (in_channels, width, dropout, ...) and the
        options of `common_options` (num_routes, lambdas, encoding, widths, weight_bits, ...).
    """
    constructor = _lookup(name)
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}.")
    allowed = model_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"model '{name}' has no option {unknown[0]!r}; its options are {sorted(allowed)}.")
    for key, value in options.items():
        check_option_type(key, value, allowed[key].annotation)
    in_channels = options.get("in_channels", 3)
    if mean is None or std is None:
        if in_channels != 3:
            raise ValueError(f"model '{name}' with in_channels={in_channels} needs explicit mean and std.")
        mean, std = CIFAR10_MEAN, CIFAR10_STD
    if not len(mean) == len(std) == in_channels:
        raise ValueError(f"mean and std must have {in_channels} entries (in_channels), got {len(mean)} and {len(std)}.")
    chosen = {k: options.pop(k) for k in list(options) if k in COMMON_OPTIONS}
    norm, codes, weight_bits = common_options(**chosen)
    return constructor(num_classes=num_classes, mean=mean, std=std, norm=norm, lambda_codes=codes,
                       weight_bits=weight_bits, **options)


_SIMPLE_TYPES = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}


def _fits(value, annotation: str) -> bool | None:
    """Whether `value` fits a constructor's annotation (written as text); None when it cannot say."""
    parts = [p.strip() for p in annotation.split("|")]
    if "None" in parts and value is None:
        return True
    checks = []
    for part in (p for p in parts if p != "None"):
        if part == "bool":
            checks.append(isinstance(value, bool))
        elif part == "int":
            checks.append(isinstance(value, int) and not isinstance(value, bool))
        elif part == "float":
            checks.append(isinstance(value, (int, float)) and not isinstance(value, bool))
        elif part == "str":
            checks.append(isinstance(value, str))
        elif part.startswith("Sequence[") and part[9:-1] in _SIMPLE_TYPES:
            checks.append(isinstance(value, (list, tuple)) and all(_fits(v, part[9:-1]) for v in value))
        else:
            return None
    return any(checks)


def check_option_type(key: str, value, annotation) -> None:
    """A model option of the wrong type, named in one sentence (YAML's "0.3" is a string, not a number)."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    if text and _fits(value, text) is False:
        kinds = [p.strip() for p in text.split("|") if p.strip() != "None"]
        wanted = " or ".join(_SIMPLE_TYPES.get(k) or "a list of which each is " + _SIMPLE_TYPES[k[9:-1]] for k in kinds)
        raise ValueError(f"model.{key} must be {wanted}, got {value!r}.")


def _lookup(name: str) -> Callable[..., Classifier]:
    return MODELS.get(name)

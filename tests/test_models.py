import math

import pytest
import torch
import torch.nn.functional as F

from robustrain.models import create_model, list_models
from robustrain.nn import Condition, RoutedBatchNorm2d

# Published parameter counts for 10 classes: kuangliu/pytorch-cifar (ResNet-18/34/50),
# He et al. 2016 / akamaster (ResNet-20 0.27M, ResNet-56 0.85M), the TRADES and
# robust-overfitting code (WRN-34-10, WRN-28-10, PreAct-ResNet-18 with final BN),
# Zagoruyko & Komodakis Table (WRN-16-8 11.0M, WRN-40-2 2.2M).
PUBLISHED = {
    "resnet18": 11_173_962,
    "resnet34": 21_282_122,
    "resnet50": 23_520_842,
    "preact_resnet18": 11_172_170,
    "wrn34_10": 46_160_474,
    "wrn28_10": 36_479_194,
    "resnet20": 269_722,
    "resnet56": 853_018,
}
PUBLISHED_ROUNDED_MILLIONS = {"wrn16_8": 11.0, "wrn40_2": 2.2}


def count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_count_matches_published(name):
    assert count(create_model(name, 10)) == PUBLISHED[name]


@pytest.mark.parametrize("name", sorted(PUBLISHED_ROUNDED_MILLIONS))
def test_parameter_count_matches_paper_rounding(name):
    assert round(count(create_model(name, 10)) / 1e6, 1) == PUBLISHED_ROUNDED_MILLIONS[name]


@pytest.mark.parametrize("name", list_models())
def test_every_model_maps_images_to_logits(name):
    model = create_model(name, 7).eval()
    with torch.no_grad():
        logits = model(torch.rand(2, 3, 32, 32))
    assert logits.shape == (2, 7)
    assert torch.isfinite(logits).all()


def test_grayscale_model_needs_and_uses_its_statistics():
    with pytest.raises(ValueError, match="mean and std"):
        create_model("small_cnn", 10, in_channels=1)
    model = create_model("small_cnn", 10, in_channels=1, mean=(0.5,), std=(0.25,)).eval()
    x = torch.rand(3, 1, 8, 8)
    assert torch.allclose(model.normalize(x), (x - 0.5) / 0.25)
    assert model(x).shape == (3, 10)


def test_unknown_model_and_option_are_named():
    with pytest.raises(ValueError, match="unknown model 'resnet19'"):
        create_model("resnet19", 10)
    with pytest.raises(ValueError, match="no option 'depth'"):
        create_model("resnet18", 10, depth=3)


def test_bound_model_is_a_plain_classifier_with_its_condition():
    model = create_model("small_cnn", 10, num_routes=2).eval()
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        model.layers[0].bn.branches[1].running_mean.fill_(3.0)
        assert torch.equal(model.bind(Condition(route=1))(x), model(x, Condition(route=1)))
        assert not torch.allclose(model.bind(Condition(route=1))(x), model(x))


def test_per_sample_routing_equals_each_group_run_alone():
    torch.manual_seed(0)
    bn = RoutedBatchNorm2d(3, num_routes=2).train()
    reference = [torch.nn.BatchNorm2d(3).train() for _ in range(2)]
    for r, ref in enumerate(reference):
        with torch.no_grad():
            bn.branches[r].weight.uniform_(0.5, 2)
            bn.branches[r].bias.uniform_(-1, 1)
        ref.load_state_dict(bn.branches[r].state_dict())
    x = torch.randn(6, 3, 4, 4) * torch.tensor([1, 5, 1, 5, 1, 5]).view(6, 1, 1, 1)
    route = torch.tensor([0, 1, 0, 1, 0, 0])
    out = bn(x, Condition(route=route))
    for r in range(2):
        rows = route == r
        assert torch.allclose(out[rows], reference[r](x[rows]), atol=1e-6)
        assert torch.allclose(bn.branches[r].running_mean, reference[r].running_mean)
        assert torch.allclose(bn.branches[r].running_var, reference[r].running_var)


@pytest.mark.parametrize("training", [True, False])
def test_per_sample_routing_with_film_has_each_group_alone_gradients(training):
    """Routes and the FiLM modulation are computed in one pass over the batch: values and gradients
    (input, BN and FiLM parameters) must be those of plain BatchNorm2d layers and FiLM applied to
    each group alone."""
    torch.manual_seed(0)
    bn = RoutedBatchNorm2d(3, num_routes=2, film_dim=4).train(training)
    with torch.no_grad():
        for branch in bn.branches:
            branch.weight.uniform_(0.5, 2), branch.bias.uniform_(-1, 1)
            branch.running_mean.uniform_(-1, 1), branch.running_var.uniform_(0.5, 2)
    x = (torch.randn(6, 3, 4, 4) * torch.tensor([1, 5, 1, 5, 1, 5]).view(6, 1, 1, 1)).requires_grad_()
    route, code = torch.tensor([0, 1, 0, 1, 0, 0]), torch.randn(6, 4)
    upstream = torch.randn(6, 3, 4, 4)
    parameters = [x, *bn.parameters()]
    mixed = torch.autograd.grad((bn(x, Condition(route=route, code=code)) * upstream).sum(), parameters)
    reference = [torch.nn.BatchNorm2d(3).train(training) for _ in range(2)]
    for r, ref in enumerate(reference):
        ref.load_state_dict(bn.branches[r].state_dict())
    groups = [(route == r).nonzero().squeeze(1) for r in range(2)]
    total = sum((bn.film(reference[r](x[rows]), code[rows]) * upstream[rows]).sum() for r, rows in enumerate(groups))
    expected = torch.autograd.grad(total, [x, *bn.film.parameters(), *reference[0].parameters(),
                                           *reference[1].parameters()])
    by_name = dict(zip([name for name, _ in bn.named_parameters()], mixed[1:]))
    assert torch.allclose(mixed[0], expected[0], atol=1e-5)
    assert all(torch.allclose(by_name[f"film.{name}"], grad, atol=1e-5)
               for (name, _), grad in zip(bn.film.named_parameters(), expected[1:5]))
    for r in range(2):
        for (name, _), grad in zip(reference[r].named_parameters(), expected[5 + 2 * r:7 + 2 * r]):
            assert torch.allclose(by_name[f"branches.{r}.{name}"], grad, atol=1e-5)


@pytest.mark.parametrize("momentum", [0.1, None])
def test_a_route_without_rows_leaves_its_branch_untouched(momentum):
    bn = RoutedBatchNorm2d(3, num_routes=2, momentum=momentum).train()
    reference = torch.nn.BatchNorm2d(3, momentum=momentum).train()
    x = torch.randn(5, 3, 4, 4) * 2 + 1
    for _ in range(2):  # twice: a cumulative average (momentum None) depends on the batch count
        out = bn(x, Condition(route=torch.zeros(5, dtype=torch.long)))
        expected = reference(x)
    assert torch.allclose(out, expected, atol=1e-5)
    assert torch.allclose(bn.branches[0].running_mean, reference.running_mean, atol=1e-6)
    assert torch.allclose(bn.branches[0].running_var, reference.running_var, atol=1e-6)
    assert int(bn.branches[0].num_batches_tracked) == 2
    assert torch.equal(bn.branches[1].running_mean, torch.zeros(3))
    assert torch.equal(bn.branches[1].running_var, torch.ones(3))
    assert int(bn.branches[1].num_batches_tracked) == 0


def test_frozen_statistics_normalise_with_the_batch_but_keep_running_values():
    bn = RoutedBatchNorm2d(2).train()
    x = torch.randn(8, 2, 3, 3) * 3 + 1
    out = bn(x, Condition(update_bn_stats=False))
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    assert torch.allclose(out, (x - mean) / torch.sqrt(var + 1e-5), atol=1e-5)
    assert torch.equal(bn.branches[0].running_mean, torch.zeros(2))
    assert torch.equal(bn.branches[0].running_var, torch.ones(2))
    assert bn.branches[0].num_batches_tracked.item() == 0


def test_route_out_of_range_is_reported():
    bn = RoutedBatchNorm2d(2, num_routes=2)
    with pytest.raises(RuntimeError, match="route values must lie in 0..1"):  # checked on the device
        bn(torch.randn(2, 2, 2, 2), Condition(route=torch.tensor([0, 2])))
    with pytest.raises(ValueError, match="route 5 does not exist"):
        bn(torch.randn(2, 2, 2, 2), Condition(route=5))


def test_single_route_matches_plain_batchnorm_in_eval():
    bn = RoutedBatchNorm2d(4).eval()
    plain = torch.nn.BatchNorm2d(4).eval()
    with torch.no_grad():
        bn.branches[0].running_mean.uniform_()
        bn.branches[0].running_var.uniform_(0.5, 2)
    plain.load_state_dict(bn.branches[0].state_dict())
    x = torch.randn(5, 4, 2, 2)
    assert torch.allclose(bn(x), plain(x))
    assert torch.allclose(bn(x), F.batch_norm(x, plain.running_mean, plain.running_var, plain.weight, plain.bias))


def test_compile_covers_every_path_methods_call():
    # AdCorDA, Auxiliary Training and EWS call penultimate / last_feature_map, not forward:
    # each must run through a compiled graph, with the eager results.
    graphs = []

    def counting_backend(graph, example_inputs):
        graphs.append(graph)
        return graph.forward

    torch._dynamo.reset()
    torch.manual_seed(0)
    model = create_model("resnet20", 10).eval()
    x = torch.rand(2, 3, 32, 32)
    paths = ("last_feature_map", "penultimate", "forward")
    with torch.no_grad():
        eager = {path: getattr(model, path)(x) for path in paths}
        assert model.compile(backend=counting_backend) is model
        for path in paths:
            before = len(graphs)
            out = getattr(model, path)(x)
            assert len(graphs) > before, f"{path} did not run through a compiled graph"
            assert torch.allclose(out, eager[path], atol=1e-5)
    assert set(model.state_dict()) == set(create_model("resnet20", 10).state_dict())


def test_imagenet_stem_resnets_have_torchvisions_parameter_counts():
    # torchvision's documented counts for 1,000 classes: resnet18 11,689,512; resnet50 25,557,032
    for name, count in (("resnet18", 11_689_512), ("resnet50", 25_557_032)):
        model = create_model(name, 1000, stem="imagenet")
        assert sum(p.numel() for p in model.parameters()) == count
    model = create_model("resnet18", 10, stem="imagenet").eval()
    assert model.feature_map(torch.rand(1, 3, 224, 224), Condition()).shape == (1, 512, 7, 7)  # stride 32
    with pytest.raises(ValueError, match="stem must be 'cifar' or 'imagenet'"):
        create_model("resnet18", 10, stem="tiny")


def test_a_model_built_directly_owns_its_conditioning_like_one_from_the_registry():
    from robustrain.models.resnet import BasicBlock, ResNet
    from robustrain.nn import LambdaCodes, NormSpec, SlimmableConv2d, SlimmableLinear

    codes = LambdaCodes((0.0, 1.0), "onehot", 2, True)
    norm = NormSpec(codes.num_routes, (0.5, 1.0), codes.dim, False)
    direct = ResNet(BasicBlock, (1, 1, 1, 1), 10, (0.5,) * 3, (0.25,) * 3, norm=norm, lambda_codes=codes,
                    weight_bits=4)
    registered = create_model("resnet18", 10, lambdas=[0.0, 1.0], encoding="onehot", encoding_dim=2,
                              widths=[0.5, 1.0], weight_bits=4)
    for model in (direct, registered):
        assert model.widths == (0.5, 1.0) and model.weight_bits == 4
        assert model.lambda_codes.values.tolist() == [0.0, 1.0]
        layers = [m for m in model.modules() if isinstance(m, (SlimmableConv2d, SlimmableLinear))]
        assert layers and all(layer.weight_bits == 4 for layer in layers)
    assert list(direct.evaluation_conditions()) == list(registered.evaluation_conditions())


def test_a_block_built_on_its_own_runs_and_masks_its_channels():
    from robustrain.models.resnet import BasicBlock
    from robustrain.nn import NormSpec

    block = BasicBlock(4, 4, 1, NormSpec()).eval()  # outside make_stages: mask index 0
    x = torch.rand(2, 4, 5, 5)
    masked = block(x, Condition(channel_masks=[torch.zeros(4)]))
    # with every middle channel masked, the residual branch is bn2(conv2(0)) = bn2's shift only
    assert block(x).shape == masked.shape == (2, 4, 5, 5) and not torch.equal(block(x), masked)


def test_he_fan_out_initialisation_draws_convolutions_from_its_closed_form():
    # train_cifar.py's initialize_weights: conv weights N(0, 2 / (k * k * out_channels)), biases 0
    from robustrain.models import initialize

    torch.manual_seed(0)
    model = create_model("preact_resnet18", 10, mean=(0.5,) * 3, std=(0.25,) * 3)
    initialize(model, "he_fan_out")
    convolutions = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.numel() > 500_000]
    assert convolutions
    for conv in convolutions:
        expected = math.sqrt(2 / (conv.kernel_size[0] * conv.kernel_size[1] * conv.out_channels))
        assert conv.weight.std().item() == pytest.approx(expected, rel=0.01)
        assert abs(conv.weight.mean().item()) < expected / 100
    assert torch.count_nonzero(model.fc.bias) == 0
    with pytest.raises(ValueError, match="model.init must be one of"):
        initialize(model, "orthogonal")

"""The measurements that end every run (and every `robustrain quantize`): clean accuracy on the
whole test set and PGD on a fixed subset, per test-time setting of a conditioned model."""

from __future__ import annotations

from ..attacks import PGD
from ..evaluate import accuracy, conditions_of
from ..models import Classifier
from ..runs import RunFolder
from ..results import PLAIN, Cost, Measurement, PGDResult, RunResults
from .run_config import RunConfig


def per_condition(model: Classifier, measure):
    """measure(model), or {setting: measure(bound model)} for a conditioned model (OAT, OATS)."""
    conditions = conditions_of(model)
    if list(conditions) == [PLAIN]:
        return measure(model)
    return {name: measure(model.bind(condition)) for name, condition in conditions.items()}


def evaluation_attack(config: RunConfig) -> PGD:
    """The PGD of a run's evaluation (`eval.pgd_*` at the run's threat)."""
    return PGD(config.threat.eps, config.threat.step_size(config.eval.pgd_step_size), config.eval.pgd_steps,
               norm=config.threat.norm, restarts=config.eval.pgd_restarts)


def robust_accuracy(net, test_set, config: RunConfig, device, limit: int | None, progress: bool = False) -> float:
    """Accuracy under the evaluation's PGD on the fixed random `limit` test images of the run's seed."""
    label = f"final PGD-{config.eval.pgd_steps} on {subset_size(test_set, limit)} images"
    return accuracy(net, test_set, batch_size=config.eval.batch_size, device=device, attack=evaluation_attack(config),
                    seed=config.seed, limit=limit, progress=label if progress else None)


def subset_size(test_set, limit: int | None) -> int:
    return len(test_set) if limit is None else min(limit, len(test_set))


def final_evaluation(folder: RunFolder, config: RunConfig, model, test_set, device, cost: Cost,
                     init_cost: Cost | None, progress: bool = False) -> RunResults:
    attack = evaluation_attack(config)
    images = subset_size(test_set, config.eval.pgd_limit)

    def measure(net) -> Measurement:
        clean = accuracy(net, test_set, batch_size=config.eval.batch_size, device=device)
        robust = robust_accuracy(net, test_set, config, device, config.eval.pgd_limit, progress)
        return Measurement(clean, PGDResult(robust, attack.steps, attack.alpha, attack.eps, attack.norm,
                                            attack.restarts, images))

    measured = per_condition(model, measure)
    results = RunResults(measured if isinstance(measured, dict) else {PLAIN: measured}, len(test_set), cost, init_cost)
    folder.write_results(results)
    return results

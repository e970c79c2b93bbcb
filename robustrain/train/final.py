"""The measurements that end every run (and every `robustrain quantize`): clean accuracy on the
whole test set and PGD on a fixed subset, per test-time setting of a conditioned model."""

from __future__ import annotations

from ..attacks import PGD
from ..evaluate import accuracy, conditions_of
from ..models import Classifier
from ..runs import RunFolder
from .init import total_cost
from .run_config import RunConfig


def per_condition(model: Classifier, measure):
    """measure(model), or {setting: measure(bound model)} for a conditioned model (OAT, OATS)."""
    conditions = conditions_of(model)
    if list(conditions) == [""]:
        return measure(model)
    return {name: measure(model.bind(condition)) for name, condition in conditions.items()}


def final_evaluation(folder: RunFolder, config: RunConfig, model, test_set, device, totals, init_cost,
                      progress: bool = False) -> dict:
    step = config.threat.step_size(config.eval.pgd_step_size)
    attack = PGD(config.threat.eps, step, config.eval.pgd_steps, norm=config.threat.norm,
                 restarts=config.eval.pgd_restarts)
    images = len(test_set) if config.eval.pgd_limit is None else min(config.eval.pgd_limit, len(test_set))

    def measure(net) -> dict:
        clean = accuracy(net, test_set, batch_size=config.eval.batch_size, device=device)
        robust = accuracy(net, test_set, batch_size=config.eval.batch_size, device=device, attack=attack,
                          seed=config.seed, limit=config.eval.pgd_limit,
                          progress=f"final PGD-{config.eval.pgd_steps} on {images} images" if progress else None)
        return {"clean_acc": clean, "pgd": {"acc": robust, "steps": config.eval.pgd_steps, "step_size": step,
                                            "eps": config.threat.eps, "norm": config.threat.norm,
                                            "restarts": config.eval.pgd_restarts, "images": images}}

    measured = per_condition(model, measure)
    results = {
        # A plain model's measurement, or one per setting of a conditioned model.
        **(measured if "clean_acc" in measured else {"conditions": measured}),
        "test_images": len(test_set),
        "cost": {**totals, "images_per_s": totals["images"] / max(totals["train_time_s"], 1e-9),
                 "forward_backward_per_image": totals["forward_backward"] / max(totals["images"], 1)},
        "init_cost": init_cost,
        "total_cost": total_cost(totals, init_cost),
    }
    folder.write_results(results)
    return results

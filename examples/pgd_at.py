"""PGD adversarial training (Madry et al., 2018) and its evaluation, from library primitives only.

The whole path in one file: data resident on the device, the PGD attack as the inner maximisation,
SGD with a one-cycle learning rate as the outer minimisation, then clean, PGD-20 and corruption
accuracy. `robustrain train --method pgd_at` does the same with checkpoints, resuming and cost
accounting; this file is for reading.

    python examples/pgd_at.py                                   # CIFAR-10 (../shared/data), 5 epochs
    python examples/pgd_at.py --data digits --epochs 3 --eps 0.1 # seconds, no files needed
"""

import argparse
import dataclasses
import time

import torch
import torch.nn.functional as F

from robustrain import accuracy, create_model, load_dataset
from robustrain.attacks import PGD
from robustrain.corruptions import corrupt_uint8
from robustrain.data import DeviceLoader, crop_flip

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--data", default="cifar10")
parser.add_argument("--data-root", default="../shared/data/cifar10-jpeg")
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--eps", type=float, default=8 / 255)
parser.add_argument("--train-limit", type=int, help="train on the first N images of a shuffled training set")
args = parser.parse_args()

torch.manual_seed(0)
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
train_set = load_dataset(args.data, args.data_root, "train")
test_set = load_dataset(args.data, args.data_root, "test")
if args.train_limit:
    keep = torch.randperm(len(train_set))[:args.train_limit]
    train_set = dataclasses.replace(train_set, images=train_set.images[keep], labels=train_set.labels[keep])
info = train_set.info

# Normalisation lives inside the model: every model takes images in [0, 1].
model = create_model("small_cnn", info.num_classes, in_channels=info.channels, width=16, mean=info.mean, std=info.std)
model = model.to(device)
loader = DeviceLoader(train_set, 128, shuffle=True, last_batch="drop", device=device,
                      augment=lambda images, generator: crop_flip(images, generator, padding=info.image_size[0] // 8))

# Inner maximisation: PGD-10 with step eps/4 from a uniform random start, BN in eval mode.
attack = PGD(args.eps, args.eps / 4, 10)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
total_steps = args.epochs * len(loader)


def one_cycle(step: int) -> float:
    """Linear rise to the peak over 40% of the steps, then linear fall to 0."""
    rise = 0.4 * total_steps
    return step / rise if step < rise else max(0.0, (total_steps - step) / (total_steps - rise))


step, started = 0, time.perf_counter()
for epoch in range(args.epochs):
    model.train()
    generator = torch.Generator().manual_seed(epoch)  # attack starts, seeded per epoch
    for x, y in loader.epoch(epoch):
        for group in optimizer.param_groups:
            group["lr"] = 0.1 * one_cycle(step)
        x_adv = attack(model, x, y, generator)                  # max over the eps-ball
        loss = F.cross_entropy(model(x_adv), y)                 # min over the weights
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
    print(f"epoch {epoch + 1}/{args.epochs}  loss {loss.item():.3f}  {time.perf_counter() - started:.0f} s")

model.eval()
clean = accuracy(model, test_set, device=device)
robust = accuracy(model, test_set, device=device, attack=PGD(args.eps, args.eps / 4, 20), limit=1000)
# Corruption accuracy: fog and Gaussian noise at severity 3, generated as the released files store them.
subset = torch.randperm(len(test_set), generator=torch.Generator().manual_seed(0))[:1000]
corrupted = {name: corrupt_uint8(test_set.images[subset], name, 3) for name in ("gaussian_noise", "fog")}
with torch.no_grad():
    corruption = {name: (model(images.to(device).float() / 255).argmax(1).cpu() == test_set.labels[subset])
                  .float().mean().item() for name, images in corrupted.items()}
print(f"clean {100 * clean:.2f}%, PGD-20 {100 * robust:.2f}% (eps {args.eps:.4g}, 1,000 images), "
      + ", ".join(f"{name} {100 * acc:.2f}%" for name, acc in corruption.items()))

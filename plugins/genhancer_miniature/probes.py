"""Evaluator ``shapes_probe``: what the frozen global token knows about each attribute.

For every attribute of the shapes world: a multinomial logistic-regression
probe (fixed splits, fixed L2, standardised features, full-batch L-BFGS, so
deterministic) trained on the global token of ``train_images`` scenes and
tested on ``test_images`` others; an MMVP-style pair test (``pairs`` scene
pairs differing only in that attribute; a pair counts only if the probe gets
both images right); the coarse-label (shape) probe as the global-semantics
guard; and a zero-shot check with the pretraining's own shape head.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F

from genhancer_plugins import EvalResult, Evaluator, ImageTextModel

from .params import ProbeParams
from .world import ATTRIBUTES, FINE, pairs, render, scene_at


def fit_probe(x: torch.Tensor, y: torch.Tensor, classes: int, l2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression by full-batch L-BFGS (deterministic)."""
    w = torch.zeros(x.shape[1], classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b], lr=1.0, max_iter=200, tolerance_grad=1e-7, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ w + b, y) + l2 * (w**2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return w.detach(), b.detach()


@functools.lru_cache(maxsize=4)
def _split(seed: int, count: int) -> tuple[list, list]:
    """A split's scenes and their renders, once per process: every encoder a process probes sees the same ones."""
    scenes = [scene_at(seed, i) for i in range(count)]
    return scenes, [render(s) for s in scenes]


@functools.lru_cache(maxsize=16)
def _pair_scenes(attribute: str, count: int, seed: int) -> tuple[list, list]:
    """An attribute's pair scenes, flattened (pair k is items 2k and 2k + 1), and their renders, once per process."""
    scenes = [s for pair in pairs(attribute, count, seed) for s in pair]
    return scenes, [render(s) for s in scenes]


#: Points a global-semantics guard may fall before the legend flags it.
GUARD_TOLERANCE = 2.0


class ShapesProbeEvaluator(Evaluator):
    name = "shapes_probe"

    def __init__(self, params: ProbeParams):
        self.params = params
        unknown = set(params.attributes or []) - set(ATTRIBUTES)
        if unknown:
            raise ValueError(f"shapes_probe: unknown attributes {sorted(unknown)}; the world has {', '.join(ATTRIBUTES)}")
        self.attributes = list(params.attributes or ATTRIBUTES)

    def _features(self, model: ImageTextModel, images: list) -> torch.Tensor:
        size = self.params.batch_size
        return torch.cat([model.image_embeddings(images[start : start + size], normalize=False).double().cpu()
                          for start in range(0, len(images), size)])

    def evaluate(self, model: ImageTextModel) -> EvalResult:
        p = self.params
        train, train_images = _split(p.split_seed, p.train_images)
        test, test_images = _split(p.split_seed + 1, p.test_images)
        x_train, raw_test = self._features(model, train_images), self._features(model, test_images)
        mean, std = x_train.mean(0), x_train.std(0) + 1e-6
        x_train, x_test = (x_train - mean) / std, (raw_test - mean) / std
        metrics: dict[str, float] = {}
        rows = []
        for attribute in self.attributes:
            classes = len(ATTRIBUTES[attribute])
            y_train = torch.tensor([getattr(s, attribute) for s in train])
            y_test = torch.tensor([getattr(s, attribute) for s in test])
            w, b = fit_probe(x_train, y_train, classes, p.l2)
            accuracy = float(((x_test @ w + b).argmax(-1) == y_test).double().mean())
            flat, flat_images = _pair_scenes(attribute, p.pairs, p.split_seed + 2)
            x_pairs = (self._features(model, flat_images) - mean) / std
            right = ((x_pairs @ w + b).argmax(-1) == torch.tensor([getattr(s, attribute) for s in flat])).view(-1, 2)
            pair_accuracy = float(right.all(dim=1).double().mean())
            metrics[f"probe_{attribute}"] = 100 * accuracy
            metrics[f"pairs_{attribute}"] = 100 * pair_accuracy
            rows.append({"attribute": attribute, "classes": classes, "probe_accuracy": round(100 * accuracy, 2),
                         "pair_accuracy": round(100 * pair_accuracy, 2), "test_images": p.test_images, "pairs": p.pairs})
        fine = [a for a in self.attributes if a in FINE]
        if fine:
            metrics["probe_fine_mean"] = sum(metrics[f"probe_{a}"] for a in fine) / len(fine)
            metrics["pairs_fine_mean"] = sum(metrics[f"pairs_{a}"] for a in fine) / len(fine)
        head = self._coarse_head(model)
        if head is not None:
            logits = raw_test.float() @ head["weight"].T.float() + head["bias"].float()
            metrics["coarse_zero_shot"] = 100 * float((logits.argmax(-1) == torch.tensor([s.shape for s in test])).float().mean())
        info = {"train_images": p.train_images, "test_images": p.test_images, "pairs_per_attribute": p.pairs, "l2": p.l2}
        return EvalResult(metrics=metrics, primary="probe_fine_mean" if fine else f"probe_{self.attributes[0]}", rows=rows, info=info)

    def _coarse_head(self, model: ImageTextModel) -> Mapping[str, torch.Tensor] | None:
        from safetensors.torch import load_file

        setting = self.params.coarse_head
        if setting is None:
            return None
        candidates = [Path(setting)] if setting != "auto" else []
        if setting == "auto":
            source = Path(str(getattr(model, "name", "")))
            candidates.append(source / "coarse_head.safetensors")
            meta = source / "genhancer.json"
            if meta.is_file():
                original = json.loads(meta.read_text()).get("encoder", {}).get("source")
                if original:
                    candidates.append(Path(original) / "coarse_head.safetensors")
        found = next((c for c in candidates if c.is_file()), None)
        return load_file(found) if found else None

    def legend(self, results: Mapping[str, EvalResult], reference: str | None = None) -> str:
        fine = ", ".join(a for a in self.attributes if a in FINE)
        lines = [
            "How to read this table:",
            f"  probe_<attribute>  accuracy (%) of a linear probe reading the attribute from the global token; fine-grained: {fine}",
            "  pairs_<attribute>  % of image pairs differing only in that attribute where the probe gets both images right (MMVP-style)",
            "  *_fine_mean        the mean over the fine-grained attributes: what GenHancer should raise",
            "  probe_shape        the coarse label, read by a fresh probe: global semantics, which should stay",
            "  coarse_zero_shot   the original encoder's own shape head applied unchanged to the new features: the strict guard",
            "                     of global semantics (the paper's Table 3 keeps zero-shot accuracy within 0.3 points)",
        ]
        if reference in results and len(results) == 2:
            other = next(label for label in results if label != reference)
            for guard in ("probe_shape", "coarse_zero_shot"):
                before, after = results[reference].metrics.get(guard), results[other].metrics.get(guard)
                if before is not None and after is not None and before - after > GUARD_TOLERANCE:
                    lines.append(f"WARNING: {guard} fell by {before - after:.1f} points ({before:.1f} -> {after:.1f}): the "
                                 f"{other} encoder lost global semantics (tolerance {GUARD_TOLERANCE:g} points)")
        return "\n".join(lines)

    def plot(self, results: Mapping[str, EvalResult], path: Path) -> Path:
        """Accuracies with chance lines (top) and, for two or more models, each model's difference to the
        first in points with its value written on the bar (bottom): 0.5-2 point gains stay visible."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        labels = list(results)
        compare = len(labels) > 1
        fig, axes = plt.subplots(2 if compare else 1, 2, figsize=(12, 7.5 if compare else 4), squeeze=False)
        width = 0.8 / max(len(labels), 1)
        ticks = range(len(self.attributes))
        for column, kind in enumerate(("probe", "pairs")):
            ax = axes[0][column]
            for i, label in enumerate(labels):
                values = [results[label].metrics.get(f"{kind}_{a}", 0.0) for a in self.attributes]
                ax.bar([k + i * width for k in ticks], values, width, label=label)
            # chance: one guess in n values; a pair needs two right guesses
            chance = [100 / len(ATTRIBUTES[a]) ** (1 if kind == "probe" else 2) for a in self.attributes]
            for k, level in zip(ticks, chance):
                ax.hlines(level, k - width / 2, k + width * (len(labels) - 0.5), colors="black", linestyles="dotted", linewidth=1)
            ax.plot([], [], "k:", linewidth=1, label="chance")
            ax.set_xticks([k + width * (len(labels) - 1) / 2 for k in ticks])
            ax.set_xticklabels(self.attributes, fontsize=8)
            ax.set_ylim(0, 100)
            ax.set_title("linear probe accuracy (%)" if kind == "probe" else "pair accuracy (%), both images right")
            ax.legend(fontsize=8)
            if not compare:
                continue
            ax = axes[1][column]
            reference = labels[0]
            others = labels[1:]
            w = 0.8 / len(others)
            for i, label in enumerate(others):
                deltas = [results[label].metrics.get(f"{kind}_{a}", 0.0) - results[reference].metrics.get(f"{kind}_{a}", 0.0)
                          for a in self.attributes]
                bars = ax.bar([k + i * w for k in ticks], deltas, w, label=f"{label} - {reference}", color=f"C{i + 1}")
                ax.bar_label(bars, labels=[f"{d:+.1f}" for d in deltas], fontsize=7, padding=2)
            ax.axhline(0, color="black", linewidth=0.8)
            ax.set_xticks([k + w * (len(others) - 1) / 2 for k in ticks])
            ax.set_xticklabels(self.attributes, fontsize=8)
            ax.margins(y=0.25)
            ax.set_ylabel("difference (points)")
            ax.set_title(f"{'probe' if kind == 'probe' else 'pair'} accuracy: difference to {reference}")
            ax.legend(fontsize=8)
        run = path.parents[2].name if len(path.parents) > 2 and path.parent.parent.name == "eval" else ""
        fig.suptitle(f"shapes probe{f': run {run}' if run else ''} ({', '.join(labels)})", fontsize=10)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path

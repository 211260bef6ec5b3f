"""`lesionlens explain-eval`: score every explanation method of a run on images with known masks.

For each method (the architecture's own, plus the reference maps of references.py):
- randomisation: cascading from the head, the Spearman correlation of the signed and the
  absolute maps against the trained model's (randomisation.py), and its noise floor: the same
  correlation between an image and the image with imperceptible noise, the model unchanged;
- localisation against the lesion masks and, on images with a planted artifact, the artifact
  masks: relevance mass accuracy, relevance rank accuracy, pointing game (Quantus);
- feature-level localisation (data with feature masks: the generator's): on melanoma images
  called melanoma, the share of the positive relevance on the melanoma-specific features
  (globules, veil, black, red and regression areas, irregular blotches and border), on the rest
  of the lesion, on the skin and on the artifact (four regions that partition the image);
- Explanation Infidelity and Max-Sensitivity (Yeh et al. 2019; captum) on the first
  `sensitivity_n` images (both re-run the method per perturbation: the expensive part);
- blockiness: the map's spectral power on the harmonics of the stem's stride against the
  frequencies beside them (metrics.blockiness): squares and dot grids, not lesion structure;
  and, with the feature share on the melanoma features, again on the map as the figures draw it
  (smoothed over that grid: render.display_map);
- totals: how often the heatmap's total has the sign of the explained logit;
- class sensitivity: the Spearman correlation between the maps of the predicted class and the
  runner-up class;
- for CRP: the mean |cosine| between the concept heatmaps (the 8 a card shows first, chosen as
  the architecture chooses them, or as `crp-CHOICE` says), the share of the logit the
  concept layer carries, how closely each concept's heatmap total matches its relevance at
  the layer (conservation below the layer), and, on melanomas with feature masks, the top
  concepts' purity (share on their best feature mask) and how many feature kinds they name.

Every score is per image; the report gives means with 95% bootstrap CIs. A method is named
`method` or `method:composite` (lrp and crp with another LRP recipe, for comparing them); crp
also as `crp@LAYER` (another concept layer) and `crp-CHOICE` (another concept choice: top,
distinct).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from ..._fileset import FileSet
from ...errors import ExplainError, UsageError
from ..concept_choice import CHOICES as CONCEPT_CHOICES
from ..input_grid import stem_stride
from ..render import COARSE_METHODS
from ..methods import MethodResult
from . import metrics
from .data import EvalImages, load_eval_images
from .randomisation import cascade
from .references import REFERENCES

DEFAULT_REFERENCES = ("gradient", "input_x_gradient", "random")
INFIDELITY_NOISE_STD = 0.1  # Gaussian, per pixel (shared by the colour channels), normalised units
SENSITIVITY_RADIUS = 0.02  # captum's default: uniform noise in [-r, r] per input value
PERTURBATIONS = 10  # samples per image for infidelity and max-sensitivity
TOP_CONCEPTS = 8


@dataclass
class MethodScores:
    name: str
    per_image: dict[str, np.ndarray] = field(default_factory=dict)  # metric -> (n,) with NaN for "n/a"
    randomisation: list[dict] = field(default_factory=list)  # [{stage, abs: (n,), signed: (n,)}]
    notes: list[str] = field(default_factory=list)
    maps: Optional[np.ndarray] = None  # the trained model's maps, while the method is scored


@dataclass
class Method:
    """One method to score: how to compute maps on a model, and what its sign means."""

    name: str
    kind: str  # lrp, crp, gradcam, attention, or a reference name
    composite: Optional[str]
    signed_evidence: bool  # False: localisation scores |map| (the plain gradient, edges)
    class_specific: bool = True
    options: dict = field(default_factory=dict)
    layer: Optional[str] = None  # CRP's concept layer; None: the architecture's default
    concept_choice: Optional[str] = None  # CRP's concept choice; None: the architecture's default

    def open(self, model: torch.nn.Module):
        """An explainer prepared once on `model` (canonized copy, rules registered), to pass to
        every compute() on that same model; None for the reference maps. Close it when done."""
        from ..explainer import Explainer

        if self.kind in REFERENCES:
            return None
        options = {"composite": self.composite} if self.composite else {}
        if self.kind == "crp":
            options.update(concepts=TOP_CONCEPTS)
            if self.layer:
                options.update(layer=self.layer)
            if self.concept_choice:
                options.update(concept_choice=self.concept_choice)
        elif self.kind == "attention_crp":
            # only its region's heatmap is scored: one conditional map (the fewest allowed), not eight
            options.update(concepts=1)
        return Explainer(model, self.kind, **options)

    def compute(self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor,
                batch: int, explainer=None) -> MethodResult:
        """Maps for `images` in batches; `explainer` (from open() on this model) saves preparing
        a copy of the model per call, which captum's perturbation loops would otherwise do."""
        if self.kind in REFERENCES:
            function = REFERENCES[self.kind][0]
            results = [function(model, images[i:i + batch], targets[i:i + batch], **self.options)
                       for i in range(0, len(images), batch)]
        else:
            own = explainer is None
            explainer = self.open(model) if own else explainer
            try:
                results = [explainer.compute(images[i:i + batch], targets[i:i + batch])
                           for i in range(0, len(images), batch)]
            finally:
                if own:
                    explainer.close()
        return MethodResult(torch.cat([r.heatmaps for r in results]), torch.cat([r.logits for r in results]),
                            torch.cat([r.targets for r in results]),
                            [c for r in results for c in r.concepts], results[0].info)


def parse_methods(names: Sequence[str], spec, seed: int) -> list[Method]:
    methods = []
    for name in names:
        # crp@LAYER (or crp:COMPOSITE@LAYER): the concepts at another of the architecture's layers;
        # crp-CHOICE (crp-distinct, crp-top, also with :COMPOSITE and @LAYER): another concept choice
        base, _, layer = name.partition("@")
        kind, _, composite = base.partition(":")
        kind, _, choice = kind.partition("-")
        if layer and kind != "crp":
            raise UsageError(f"method {name!r}: only crp takes a layer (crp@LAYER)")
        if choice and kind != "crp":
            raise UsageError(f"method {name!r}: only crp takes a concept choice (crp-CHOICE)")
        if choice and choice not in CONCEPT_CHOICES:
            raise UsageError(f"method {name!r}: unknown concept choice {choice!r}; use one of "
                             f"{[f'crp-{c}' for c in CONCEPT_CHOICES]}")
        if layer and layer not in spec.concept_layers:
            raise UsageError(f"method {name!r}: {layer!r} is not a concept layer of {spec.name}; "
                             f"use one of {list(spec.concept_layers)}")
        if kind in REFERENCES:
            if composite:
                raise UsageError(f"method {name!r}: only lrp and crp take a composite")
            methods.append(Method(name, kind, None, REFERENCES[kind][1],
                                  options={"seed": seed} if kind == "random" else {},
                                  class_specific=kind not in ("random", "edge")))
        elif kind in spec.methods:
            if composite and kind not in ("lrp", "crp"):
                raise UsageError(f"method {name!r}: only lrp and crp take a composite")
            if composite:
                from ..rules import get_recipe

                get_recipe(composite)  # a clear error for a typo, before any work
            # Grad-CAM and attention are >= 0 and LRP/CRP signed evidence: all score their positive part
            methods.append(Method(name, kind, composite or None, True, class_specific=kind != "attention",
                                  layer=layer or None, concept_choice=choice or None))
        else:
            raise UsageError(f"unknown method {name!r} for {spec.name}; use {list(spec.methods)}, "
                             f"{sorted(REFERENCES)}, or lrp:<composite> / crp:<composite> / crp@<layer> / "
                             f"crp-<choice>")
    return methods


def default_methods(spec) -> list[str]:
    return list(spec.methods) + list(DEFAULT_REFERENCES)


FEATURE_REGIONS = ("melanoma_features", "lesion_rest", "skin", "artifact")


def feature_regions(data: EvalImages) -> Optional[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """(scored: (N,) bool, {region: (N, S, S) bool}) for the feature-level localisation, or None
    when the data has no feature masks or no positive class. Scored: melanoma images whose masks
    were all read. The regions partition each image: the artifact first (what it covers is not
    the lesion's), then the melanoma features, then the rest of the lesion, then the skin."""
    from ...data.synth import MELANOMA_FEATURES

    if data.feature_masks is None or data.lesion_masks is None or data.positive is None:
        return None
    empty = np.zeros_like(data.lesion_masks)
    artifact = data.artifact_masks
    features = np.zeros_like(empty)
    for name in MELANOMA_FEATURES:
        features |= data.feature_masks.get(name, empty)
    features &= ~artifact
    lesion_rest = data.lesion_masks & ~features & ~artifact
    skin = ~(artifact | features | lesion_rest)
    scored = (data.labels == data.positive) & data.masks_known & data.features_known
    return scored, {"melanoma_features": features, "lesion_rest": lesion_rest, "skin": skin, "artifact": artifact}


def _feature_localisation(scores: MethodScores, maps: np.ndarray, data: EvalImages, signed: bool,
                          targets: torch.Tensor, only: Optional[str] = None, suffix: str = "") -> None:
    """Per melanoma image explained as melanoma: the share of its positive evidence on each
    region of feature_regions (NaN elsewhere), or on region `only`, as feature_share_<region><suffix>.
    A map that points at what makes a melanoma a melanoma puts more on `melanoma_features` than
    the region's share of the image."""
    found = feature_regions(data)
    if found is None:
        return
    scored, regions = found
    scored = scored & (targets.numpy() == data.positive)
    evidence = metrics.evidence(maps, signed)
    for name, masks in regions.items():
        if only is not None and name != only:
            continue
        values = np.full(len(maps), np.nan)
        present = scored & masks.reshape(len(masks), -1).any(1)
        if present.any():
            values[present] = metrics.mass_accuracy(evidence[present], masks[present])
        values[scored & ~present] = 0.0  # an empty region holds none of the evidence
        scores.per_image[f"feature_share_{name}{suffix}"] = values


def as_drawn(maps: np.ndarray, signed: bool, grid: int) -> np.ndarray:
    """The maps as a figure draws them (render.display_map): a signed map smoothed as it is; a map
    whose sign means nothing (the gradient) as |map|, smoothed (its alternating signs would
    otherwise cancel under the smoothing and the evidence vanish)."""
    from ..render import display_map

    return np.stack([display_map(m, grid) for m in (maps if signed else np.abs(maps))])


def _localisation(scores: MethodScores, maps: np.ndarray, data: EvalImages, signed: bool) -> None:
    if data.lesion_masks is None:
        scores.notes.append("no masks in the data: localisation not scored")
        return
    evidence = metrics.evidence(maps, signed)
    for target, masks in (("lesion", data.lesion_masks), ("artifact", data.artifact_masks)):
        # images whose masks could not be read are left out here, and only here
        present = masks.reshape(len(masks), -1).any(1) & data.masks_known
        for metric, function in (("mass_accuracy", metrics.mass_accuracy), ("rank_accuracy", metrics.rank_accuracy),
                                 ("pointing_game", metrics.pointing_game)):
            values = np.full(len(maps), np.nan)
            if present.any():
                values[present] = function(evidence[present], masks[present])
            scores.per_image[f"{metric}_{target}"] = values


def _infidelity_and_sensitivity(method: Method, model, images: torch.Tensor, targets: torch.Tensor,
                                maps: torch.Tensor, batch: int, seed: int,
                                explainer=None) -> tuple[np.ndarray, np.ndarray]:
    from captum.metrics import infidelity, sensitivity_max

    generator = torch.Generator().manual_seed(seed)

    def perturb(inputs):
        # the same noise on the three colour channels: our maps are per pixel (summed over
        # channels), so the infidelity's dot product I . a is per pixel too
        noise = torch.randn(inputs.shape[0], 1, *inputs.shape[2:], generator=generator) * INFIDELITY_NOISE_STD
        noise = noise.expand_as(inputs)
        return noise, inputs - noise

    def explain(inputs, target=None):
        inputs = inputs[0] if isinstance(inputs, tuple) else inputs  # captum passes a tuple
        target = torch.as_tensor(target).reshape(-1).expand(len(inputs))  # captum keeps one target
        result = method.compute(model, inputs, target, batch, explainer)
        return ((result.heatmaps[:, None] / 3).expand_as(inputs).contiguous(),)  # captum wants a tuple

    attributions = (maps[:, None] / 3).expand_as(images).contiguous()
    infid, sens = [], []
    with torch.enable_grad():
        for i in range(len(images)):
            x, t = images[i:i + 1], targets[i:i + 1]
            infid.append(float(infidelity(model, perturb, x, attributions[i:i + 1], target=t,
                                          n_perturb_samples=PERTURBATIONS, normalize=True)))
            torch.manual_seed(seed + i)  # sensitivity_max draws with torch's global generator
            sens.append(float(sensitivity_max(explain, x, target=t, n_perturb_samples=PERTURBATIONS,
                                              perturb_radius=SENSITIVITY_RADIUS)))
    return np.asarray(infid), np.asarray(sens)


def _noise_floor(method: Method, model, images: torch.Tensor, targets: torch.Tensor, maps: np.ndarray,
                 batch: int, seed: int, explainer=None) -> np.ndarray:
    """Spearman of |map| between each image and the image plus uniform noise in +-SENSITIVITY_RADIUS
    (Max-Sensitivity's), the model unchanged: how far a map moves without any change to the model.
    A randomisation row no lower than this shows no dependence on the randomised weights that
    noise alone would not give; an unstable map "passes" the cascade by being noisy (EfficientNet's
    LRP with epsilon 1e-6 did: docs/explanation-choice.md)."""
    noisy = method.compute(model, with_input_noise(images, seed), targets, batch, explainer).heatmaps.numpy()
    return metrics.spearman(np.abs(maps), np.abs(noisy))


def with_input_noise(images: torch.Tensor, seed: int) -> torch.Tensor:
    """`images` plus uniform noise in +-SENSITIVITY_RADIUS per value, drawn from `seed`: the noise
    of the noise floor (scripts/stability_figure.py draws with the same)."""
    generator = torch.Generator().manual_seed(seed)
    return images + (torch.rand(images.shape, generator=generator) * 2 - 1) * SENSITIVITY_RADIUS


def _crp_scores(scores: MethodScores, result: MethodResult) -> None:
    """Distinctness, the layer's share of the logit, and conservation below the layer, from the
    concepts' own numbers (each carries its channel's and its layer's relevance / the logit)."""
    cosines = [metrics.mean_abs_cosine(torch.stack([c.heatmap for c in concepts]).numpy())
               for concepts in result.concepts]
    scores.per_image["concept_abs_cosine"] = np.asarray(cosines)
    logits = result.logits[torch.arange(len(result.targets)), result.targets].numpy()
    shares, errors = [], []
    for concepts, logit in zip(result.concepts, logits):
        layer_share = concepts[0].layer_share_of_logit if concepts else None
        shares.append(np.nan if layer_share is None else layer_share)
        # the top concepts' heatmap totals against their relevance at the layer
        at_layer = sum(c.share_of_logit for c in concepts if c.share_of_logit is not None) * float(logit)
        totals = float(sum(float(c.heatmap.sum()) for c in concepts))
        errors.append(abs(totals / at_layer - 1) if at_layer else np.nan)
    scores.per_image["layer_share_of_logit"] = np.asarray(shares)
    scores.per_image["concept_conservation_error"] = np.asarray(errors)


PURITY_CONCEPTS = 4  # the concepts a melanoma's card shows first


def _concept_purity(scores: MethodScores, result: MethodResult, data: EvalImages, targets: torch.Tensor) -> None:
    """On melanoma images explained as melanoma with every feature mask read, for the top
    PURITY_CONCEPTS concepts: concept_purity, the mean share of a concept's positive relevance
    on its best feature mask (a feature the generator drew, or the artifact: what names it in
    the atlas), and concept_feature_kinds, how many different features those best masks are. A
    concept map spread over the lesion scores the biggest feature's share of it; concepts that
    all look at one blotch name one kind."""
    from ..feature_names import regions_of, shares

    found = feature_regions(data)
    if found is None or not result.concepts:
        return
    scored = found[0] & (targets.numpy() == data.positive)
    purity, kinds = np.full(len(targets), np.nan), np.full(len(targets), np.nan)
    for i in np.nonzero(scored)[0]:
        regions = regions_of({name: masks[i] for name, masks in data.feature_masks.items()},
                             data.artifact_masks[i], data.lesion_masks[i])
        regions = {name: mask for name, mask in regions.items() if name not in ("lesion_rest", "skin")}
        best = []
        for concept in result.concepts[i][:PURITY_CONCEPTS]:
            found_shares = shares(concept.heatmap.numpy(), regions)
            if found_shares:
                best.append(max(found_shares.items(), key=lambda kv: kv[1]))
        if best:
            purity[i] = float(np.mean([share for _, share in best]))
            kinds[i] = len({name for name, _ in best})
    scores.per_image["concept_purity"] = purity
    scores.per_image["concept_feature_kinds"] = kinds


def _other_class_targets(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    masked = logits.clone()
    masked[torch.arange(len(targets)), targets] = -torch.inf
    return masked.argmax(1)


def _score_trained(scores: MethodScores, method: Method, model, data: EvalImages, images: torch.Tensor,
                   logits: torch.Tensor, targets: torch.Tensor, batch: int, sensitivity_n: int, seed: int,
                   explainer, step: Callable[[str], None]) -> None:
    """Every score on the trained model (all but randomisation); leaves the maps in scores.maps."""
    explained_logit = logits[torch.arange(len(targets)), targets].numpy()
    step("maps")
    result = method.compute(model, images, targets, batch, explainer)
    maps = scores.maps = result.heatmaps.numpy()
    if method.kind in ("lrp", "crp"):  # relevance totals: the only maps whose total means a logit
        totals = maps.reshape(len(maps), -1).sum(1)
        scores.per_image["total_sign_agrees"] = metrics.sign_agrees(totals, explained_logit)
        scores.per_image["total_over_logit"] = totals / explained_logit
    _localisation(scores, maps, data, method.signed_evidence)
    # on the evidence a viewer reads off the map (its positive part; |map| for the gradient)
    grid = stem_stride(model)
    scores.per_image["blockiness"] = metrics.blockiness(metrics.evidence(maps, method.signed_evidence), grid)
    _feature_localisation(scores, maps, data, method.signed_evidence, targets)
    # ... and as the figures draw it: smoothed over the input grid (render.display_map; Grad-CAM
    # and attention are drawn as they are), the same treatment for LRP and the pixel references
    if method.kind not in COARSE_METHODS:
        drawn = as_drawn(maps, method.signed_evidence, grid)
        scores.per_image["blockiness_displayed"] = metrics.blockiness(
            metrics.evidence(drawn, method.signed_evidence), grid)
        _feature_localisation(scores, drawn, data, method.signed_evidence, targets, only="melanoma_features",
                              suffix="_displayed")
    if method.class_specific and logits.shape[1] > 1:
        step("class sensitivity")
        other = method.compute(model, images, _other_class_targets(logits, targets), batch, explainer)
        scores.per_image["class_spearman"] = metrics.spearman(maps, other.heatmaps.numpy())
    if method.kind == "crp":
        _crp_scores(scores, result)
        _concept_purity(scores, result, data, targets)
    # CRP's full heatmap is the LRP map: its infidelity, sensitivity and randomisation are LRP's
    if sensitivity_n and method.kind not in ("random", "crp"):
        step("infidelity and max-sensitivity")
        k = min(sensitivity_n, len(images))
        infid, sens = _infidelity_and_sensitivity(method, model, images[:k], targets[:k],
                                                  result.heatmaps[:k], batch, seed, explainer)
        scores.per_image["infidelity"] = np.concatenate([infid, np.full(len(images) - k, np.nan)])
        scores.per_image["max_sensitivity"] = np.concatenate([sens, np.full(len(images) - k, np.nan)])


def evaluate_methods(model, data: EvalImages, methods: list[Method], *, seed: int = 0, batch: int = 16,
                     sensitivity_n: int = 32, randomise: bool = True,
                     progress: Optional[Callable[[str], None]] = None) -> dict[str, MethodScores]:
    images = torch.from_numpy(data.images)
    with torch.no_grad():
        logits = torch.cat([model(images[i:i + batch]) for i in range(0, len(images), batch)])
    targets = logits.argmax(1)  # every method explains the model's own decision
    out = {}
    for method in methods:
        step = (lambda what: progress(f"{method.name}: {what}")) if progress else (lambda what: None)
        scores = MethodScores(method.name)
        explainer = method.open(model)  # one prepared copy for every pass on the trained model
        try:
            _score_trained(scores, method, model, data, images, logits, targets, batch, sensitivity_n, seed,
                           explainer, step)
            if randomise and method.kind != "crp":
                step("noise floor")
                scores.per_image["noise_floor"] = _noise_floor(method, model, images, targets, scores.maps, batch,
                                                               seed, explainer)
        finally:
            if explainer is not None:
                explainer.close()
        # the cascade re-randomises one copy in place, so each method walks its own (same seed,
        # same draws: every method sees the same randomised models)
        for label, randomised in (cascade(model, seed) if randomise and method.kind != "crp" else ()):
            step(f"randomised down to {label}")
            rmaps = method.compute(randomised, images, targets, batch).heatmaps.numpy()
            maps = scores.maps
            scores.randomisation.append({"stage": label, "abs": metrics.spearman(np.abs(maps), np.abs(rmaps)),
                                         "signed": metrics.spearman(maps, rmaps)})
        scores.maps = None  # (n, H, W): not kept past the method
        out[method.name] = scores
    return out


REPORT_FILES = ("explain_eval.json", "explain_eval.md", "randomisation.png", "metrics.png")


def run_explain_eval(run: Path, data: Path, out: Path, *, n: int = 200, methods: Optional[Sequence[str]] = None,
                     seed: int = 0, sensitivity_n: int = 32, batch: int = 16, image_root: Optional[Path] = None,
                     quiet: bool = False) -> dict:
    """Load the run, score the methods on `n` images of `data`, write the report into `out`."""
    from tqdm import tqdm

    from ...training.models import spec_of_model
    from ...training.rundir import load_run
    from .report import write_report

    torch.manual_seed(seed)
    model, meta = load_run(run)
    spec = spec_of_model(model)
    chosen = parse_methods(methods or default_methods(spec), spec, seed)
    if n < 2:
        raise UsageError("--n must be at least 2 (confidence intervals need images)")
    images = load_eval_images(data, meta.preprocessing, meta.classes, n, seed, image_root)
    images.positive = meta.positive_index
    steps = sum(1 + (m.class_specific) + (m.kind == "crp") + bool(sensitivity_n and m.kind not in ("random", "crp"))
                + (0 if m.kind == "crp" else len(spec.stages)) for m in chosen)
    bar = tqdm(total=steps, desc="explain-eval", disable=quiet, unit="step")

    def progress(what: str) -> None:
        bar.set_postfix_str(what[:60])
        bar.update(1)

    try:
        scores = evaluate_methods(model, images, chosen, seed=seed, batch=batch, sensitivity_n=sensitivity_n,
                                  progress=progress)
    finally:
        bar.close()
    if not scores:
        raise ExplainError("no method was scored")
    # the report, its tables and plots change as one set: the demo and the report read them by name
    # (exact names: --out may be a folder with other files, even the run itself with its metrics.json)
    with FileSet(out, members=lambda name: name in REPORT_FILES).staging() as stage:
        report = write_report(stage.path, scores, run=Path(run), data=Path(data), images=images, meta=meta,
                              spec=spec, seed=seed, sensitivity_n=min(sensitivity_n, len(images.paths)))
        stage.publish()
    return report

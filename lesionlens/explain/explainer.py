"""`Explainer(model, method, **options)`: one object that owns a model prepared for one method.

    with Explainer(model, "crp", classes=classes, concepts=4, concept_choice="distinct") as explainer:
        explanations = explainer.explain(images)            # (B, 3, H, W) preprocessed
    explain(model, image, method="lrp")                       # the one-shot call (api.py)

Preparing is the expensive part (canonizers, the fast engine's patches or zennit's hooks), so
long-lived users (the sidecar, the demo, explain-eval, the benchmarks) build one explainer per
method and keep it. By default the explainer works on its own copy of the model and never
touches the caller's; `copy=False` (the one-shot call) prepares the caller's model in place and
restores it on `close()`. LRP and CRP need the same preparation, so one may borrow the other's
prepared copy (`share=`): the sidecar holds one prepared copy for both, not two.

Options are explicit keywords, validated against the method: a typo is a TypeError, and an
option that does not apply to the method (`concepts` for lrp) is an ExplainError.
"""

from __future__ import annotations

import copy as copying
from typing import Optional, Sequence

import numpy as np
import torch

from ..errors import ExplainError
from .concept_choice import check_choice
from .input_grid import stem_stride
from .methods import LRP_METHODS, METHODS
from .rules import get_recipe

ENGINES = ("fast", "zennit")
DEFAULT_CONCEPTS = 8
CRP_OPTIONS = {"engine", "concepts", "layer", "composite", "concept_choice"}
OPTIONS = {"lrp": {"engine", "composite"}, "crp": CRP_OPTIONS, "attention_crp": CRP_OPTIONS, "gradcam": set(),
           "attention": set()}
PER_IMAGE_INFO = ("regions", "region_share_of_logit", "region_relevance")  # info entries with one value per image


class Explainer:
    def __init__(self, model: torch.nn.Module, method: str = "lrp", *, classes: Optional[Sequence[str]] = None,
                 engine: Optional[str] = None, concepts: Optional[int] = None, layer: Optional[str] = None,
                 composite: Optional[str] = None, concept_choice: Optional[str] = None, copy: bool = True,
                 share: Optional["Explainer"] = None):
        from ..training.models import spec_of_model

        if method not in METHODS:
            raise ExplainError(f"unknown method {method!r}; use one of {sorted(METHODS)}")
        self.spec = spec_of_model(model)
        if method not in self.spec.methods:
            raise ExplainError(f"method {method!r} needs an architecture with an attention head "
                               f"(e.g. attention_resnet50); {self.spec.name} supports {list(self.spec.methods)}")
        given = {name for name, value in (("engine", engine), ("concepts", concepts), ("layer", layer),
                                          ("composite", composite), ("concept_choice", concept_choice))
                 if value is not None}
        stray = sorted(given - OPTIONS[method])
        if stray:
            raise ExplainError(f"option(s) {stray} do not apply to method {method!r}")
        self.method = method
        self.classes = list(classes) if classes else None
        self.engine = engine or "fast"
        if self.engine not in ENGINES:
            raise ExplainError(f"unknown engine {self.engine!r}: use one of {ENGINES}")
        self.composite = get_recipe(composite or self.spec.composite).name  # the LRP rules (rules.py)
        if self.engine == "fast" and method in LRP_METHODS:
            from .fast_lrp import supports

            missing = supports(get_recipe(self.composite))
            if missing:
                raise ExplainError(f"the fast engine does not implement {missing} (composite {self.composite!r}); "
                                   "use engine='zennit'")
        self.layer = layer or self.spec.default_concept_layer
        self.input_grid = stem_stride(model)  # what the figures smooth the map over (render.display_map)
        if share is not None:
            if method not in LRP_METHODS or share.method not in LRP_METHODS \
                    or share.engine != self.engine or share.composite != self.composite or share.closed:
                raise ExplainError("only an open lrp/crp explainer on the same engine can share its prepared model")
            self.model = share.model  # prepared already; its owner restores it
        else:
            self.model = copying.deepcopy(model) if copy else model
        self.model.eval()
        if method in ("crp", "attention_crp"):
            self.channels = self._layer_channels(self.layer)
            self.concepts = self.check_concepts(DEFAULT_CONCEPTS if concepts is None else concepts)
            self.concept_choice = check_choice(concept_choice or self.spec.concept_choice)
        self._restore = None
        self._share = share
        if share is None:
            self._prepare()

    # ---- lifetime --------------------------------------------------------------------------
    def _prepare(self) -> None:
        if self.method not in LRP_METHODS:
            return  # plain autograd: nothing to prepare
        if self.engine == "fast":
            from .fast_lrp import fast_lrp

            context = fast_lrp(self.model, self.composite)
            context.__enter__()
            self._restore = lambda: context.__exit__(None, None, None)
        else:
            from .lrp import composite_for

            composite = composite_for(self.model, self.composite)
            composite.register(self.model)
            self._restore = composite.remove

    @property
    def closed(self) -> bool:
        if self._share is not None:
            return self._share.closed
        return self.method in LRP_METHODS and self._restore is None

    def close(self) -> None:
        """Undo the preparation (the model is restored exactly); idempotent. An explainer that
        borrowed another's model leaves it to that one."""
        restore, self._restore = self._restore, None
        if restore is not None:
            restore()

    def __enter__(self) -> "Explainer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- checks ----------------------------------------------------------------------------
    def _layer_channels(self, layer: str) -> int:
        try:
            module = self.model.get_submodule(layer)
        except AttributeError:
            raise ExplainError(f"no layer {layer!r} in {self.spec.name}; its CRP layers are "
                               f"{list(self.spec.concept_layers)}") from None
        channels = getattr(module, "out_channels", None) or getattr(module, "num_features", None)
        if channels is None:  # a block: ask its output
            children = [m for m in module.modules() if hasattr(m, "out_channels")]
            channels = children[-1].out_channels if children else None
        if channels is None:
            raise ExplainError(f"layer {layer!r} has no channels to take concepts from")
        return int(channels)

    def check_concepts(self, concepts) -> int:
        if isinstance(concepts, bool) or not isinstance(concepts, (int, np.integer)) \
                or not 1 <= concepts <= self.channels:
            raise ExplainError(f"concepts must be a whole number from 1 to {self.channels} "
                               f"(the channels of {self.layer}), got {concepts!r}")
        return int(concepts)

    # ---- work ------------------------------------------------------------------------------
    def explain(self, images, targets: Optional[Sequence[Optional[int]]] = None, *,
                concepts: Optional[int] = None, concept_choice: Optional[str] = None) -> list:
        """One Explanation per image of a preprocessed batch (B, 3, H, W) (or one image (3, H, W)).
        targets: a class index per image, None for "the predicted class" (the default for all).
        concepts, concept_choice: crp only, override the explainer's for this call."""
        from .api import Explanation
        from .targets import PREDICTED

        if self.closed:
            raise ExplainError("this explainer is closed")
        for option, value in (("concepts", concepts), ("concept_choice", concept_choice)):
            if value is not None and self.method not in ("crp", "attention_crp"):
                raise ExplainError(f"option {option!r} does not apply to method {self.method!r}")
        device = next(self.model.parameters()).device
        x = _as_batch(images).to(device)
        num_classes = len(self.classes) if self.classes else None
        for t in targets or []:
            if t is not None and (int(t) < 0 or (num_classes and int(t) >= num_classes)):
                known = f"{num_classes} classes ({self.classes})" if num_classes else "class indices from 0"
                raise ExplainError(f"target out of range: {int(t)}; the model has {known}")
        if targets is not None and len(targets) != len(x):
            raise ExplainError(f"{len(targets)} targets for {len(x)} images")
        wanted = None if targets is None else torch.as_tensor(
            [PREDICTED if t is None else int(t) for t in targets], dtype=torch.long, device=device)
        try:
            result = self.compute(x, wanted, concepts, concept_choice)
        except ValueError as exc:  # targets.resolve_targets: out of range for the model's logits
            raise ExplainError(str(exc)) from None
        probs = torch.softmax(result.logits.float(), 1)
        classes = self.classes or [str(i) for i in range(probs.shape[1])]
        explanations = []
        for i in range(len(x)):
            p = probs[i].cpu().numpy()
            target = int(result.targets[i])
            explanations.append(Explanation(
                heatmap=result.heatmaps[i].detach().float().cpu().numpy(),
                method=self.method, target=target, target_label=classes[target],
                prediction={"label": classes[int(p.argmax())], "index": int(p.argmax()),
                            "probabilities": {c: float(v) for c, v in zip(classes, p)}},
                concepts=result.concepts[i] if result.concepts else [],
                info=dict({k: v for k, v in result.info.items() if k not in PER_IMAGE_INFO},
                          **{k: result.info[k][i] for k in PER_IMAGE_INFO if k in result.info},
                          arch=self.spec.name, input_grid=self.input_grid,
                          **({"composite": self.composite} if self.method in LRP_METHODS else {})),
            ))
        return explanations

    def compute(self, x: torch.Tensor, targets: Optional[torch.Tensor] = None, concepts: Optional[int] = None,
                concept_choice: Optional[str] = None):
        """The method's raw MethodResult on a preprocessed batch already on the model's device
        (tensors, batched: what explain-eval scores); `explain` wraps it into Explanations."""
        run = METHODS[self.method]
        if self.method == "lrp":
            return run(self.model, x, targets, engine=self.engine)
        if self.method in ("crp", "attention_crp"):
            count = self.concepts if concepts is None else self.check_concepts(concepts)
            choice = self.concept_choice if concept_choice is None else check_choice(concept_choice)
            extra = {"module": self.spec.attention} if self.method == "attention_crp" else {}
            return run(self.model, x, targets, engine=self.engine, concepts=count, layer=self.layer, choice=choice,
                       **extra)
        if self.method == "gradcam":
            return run(self.model, x, targets, layer=self.spec.gradcam_layer)
        return run(self.model, x, targets, module=self.spec.attention)


def _as_batch(image) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(image) if not isinstance(image, torch.Tensor) else image, dtype=torch.float32)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[1] != 3:
        raise ExplainError(f"expected a preprocessed image (3, H, W) or batch (B, 3, H, W), got {tuple(x.shape)}")
    return x

"""explain-eval's report: explain_eval.json (every mean with its 95% bootstrap CI),
explain_eval.md (the same as tables, with what each number means) and two plots
(randomisation curves; metric bars with CI whiskers)."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np

from ..._io import write_json, write_text
from ...escape import md_text
from . import metrics

# metric -> (what it means, which direction is better)
METRICS = {
    "mass_accuracy_lesion": ("share of the positive relevance inside the lesion mask", "higher"),
    "rank_accuracy_lesion": ("share of the lesion's pixels among the map's top-|lesion| pixels", "higher"),
    "pointing_game_lesion": ("the map's maximum lies on the lesion", "higher"),
    "mass_accuracy_artifact": ("share of the positive relevance on the planted artifact (images with one)",
                               "the shortcut's weight: not better or worse"),
    "rank_accuracy_artifact": ("rank accuracy on the artifact mask (images with one)", "-"),
    "pointing_game_artifact": ("the map's maximum lies on the artifact (images with one)", "-"),
    "feature_share_melanoma_features": ("melanoma images called melanoma: share of the positive relevance on the "
                                        "melanoma-specific features (feature masks)", "higher"),
    "feature_share_lesion_rest": ("... on the rest of the lesion", "-"),
    "feature_share_skin": ("... on the skin around the lesion", "lower"),
    "feature_share_artifact": ("... on a planted artifact", "lower"),
    "blockiness": ("spectral power of the evidence map on the stem stride's harmonics / beside them "
                   "(about 1: no grid; squares or dots on the stride's grid score above)", "lower"),
    "blockiness_displayed": ("blockiness of the map as the figures draw it: smoothed over the input grid "
                             "(Gaussian, sigma = grid / 2; Grad-CAM and attention drawn as they are)", "lower"),
    "feature_share_melanoma_features_displayed": ("feature_share_melanoma_features of the map as the figures "
                                                  "draw it", "higher"),
    "total_sign_agrees": ("the heatmap's total has the sign of the explained logit", "higher"),
    "total_over_logit": ("heatmap total / explained logit (1 = conserved)", "near 1"),
    "class_spearman": ("Spearman of the maps for the predicted and the runner-up class "
                       "(binary: -1 is what a conserving method should give; N-class: near 0)", "-"),
    "noise_floor": ("Spearman of |map| between the image and the image plus uniform noise in +-0.02 (Max-"
                    "Sensitivity's radius), the model unchanged: a randomisation row at or above it shows no "
                    "dependence on the randomised weights beyond what noise gives", "higher (stable)"),
    "infidelity": ("Explanation Infidelity (Yeh et al. 2019), normalised", "lower"),
    "max_sensitivity": ("Max-Sensitivity (Yeh et al. 2019)", "lower"),
    "concept_abs_cosine": ("mean |cosine| between the 8 concept heatmaps shown first", "lower (distinct)"),
    "layer_share_of_logit": ("the concept layer's total relevance / the explained logit", "near 1"),
    "concept_purity": ("melanomas called melanoma: mean share of a first-4 concept's positive relevance on its best "
                       "feature mask (a drawn feature or the artifact)", "higher (one concept, one feature)"),
    "concept_feature_kinds": ("... how many different features the first 4 concepts' best masks are (1-4)",
                              "higher (concepts that see different things)"),
    "concept_conservation_error": ("|concept heatmap totals / their relevance at the layer - 1|", "lower"),
}
GOAL_STAGE = 2  # "the top stage and the head": the second step of the cascade


def summarise(scores, seed: int) -> dict:
    out = {}
    for name, s in scores.items():
        entry = {"metrics": {k: metrics.bootstrap_ci(v, seed=seed) for k, v in s.per_image.items()},
                 "randomisation": [{"stage": r["stage"], "abs": metrics.bootstrap_ci(r["abs"], seed=seed),
                                    "signed": metrics.bootstrap_ci(r["signed"], seed=seed)}
                                   for r in s.randomisation],
                 "notes": s.notes}
        out[name] = entry
    return out


def _fmt(ci: dict, digits: int = 3) -> str:
    if not ci or ci.get("mean") is None:
        return "n/a"
    small = max(abs(ci["mean"]), abs(ci["low"]), abs(ci["high"])) < 10 ** -digits
    spec = f".{digits}g" if small else f".{digits}f"
    return f"{ci['mean']:{spec}} [{ci['low']:{spec}}, {ci['high']:{spec}}]"


def _markdown(summary: dict, header: dict) -> str:
    names = list(summary)
    # run and data paths are names from the user's disk: escaped, like every data string in a page
    lines = [f"# Explanation evaluation: {header['arch']} ({md_text(header['run'])})", "",
             f"{header['n']} images of {md_text(header['data'])} (seed {header['seed']}), each explained for the "
             f"model's predicted class; {header['skipped']} skipped, {header['mask_problems']} with masks that could "
             "not be read (scored on all but localisation). Means with 95% bootstrap CIs over images.", "",
             "## Randomisation (Adebayo et al. 2018)", "",
             "Spearman of |map| between the trained model and the model with the named stage and everything above "
             "it re-initialised (cascading from the head). An explanation of the model falls; one that ignores "
             "the model stays near 1. The first row is the noise floor: the same correlation between each image "
             "and the image with imperceptible noise, nothing randomised. A method falling no lower than its "
             "floor shows noise, not the model. Goal for the defaults (issue 19): no higher than the gradient's at "
             "every level, each read against its floor (docs/explanation-choice.md).", ""]
    stages = []
    for name in names:
        for r in summary[name]["randomisation"]:
            if r["stage"] not in stages:
                stages.append(r["stage"])
    ranked = [n for n in names if summary[n]["randomisation"]]
    lines.append("| randomised down to | " + " | ".join(ranked) + " |")
    lines.append("|---" * (len(ranked) + 1) + "|")
    if any("noise_floor" in summary[n]["metrics"] for n in ranked):
        lines.append("| nothing (input noise +-0.02: the floor) | "
                     + " | ".join(_fmt(summary[n]["metrics"].get("noise_floor", {}), 2) for n in ranked) + " |")
    for stage in stages:
        row = []
        for name in ranked:
            hit = [r for r in summary[name]["randomisation"] if r["stage"] == stage]
            row.append(_fmt(hit[0]["abs"], 2) if hit else "")
        lines.append(f"| {stage} | " + " | ".join(row) + " |")
    lines += ["", "## Scores", ""]
    keys = [k for k in METRICS if any(k in summary[n]["metrics"] for n in names)]
    lines.append("| metric | " + " | ".join(names) + " |")
    lines.append("|---" * (len(names) + 1) + "|")
    for key in keys:
        lines.append(f"| {key} | " + " | ".join(_fmt(summary[n]["metrics"].get(key, {}), 3) for n in names) + " |")
    areas = header.get("feature_region_areas")
    if areas:
        lines += ["", f"Feature-level localisation: {areas['images']} melanoma images (those called melanoma are "
                  "scored). The share of each image the regions cover, the share a map spreading evidence "
                  "evenly would put on them: " + ", ".join(f"{k} {v:.3f}" for k, v in areas.items() if k != "images")
                  + "."]
    lines += ["", "## What the numbers mean", ""]
    lines += [f"- **{k}**: {METRICS[k][0]} ({METRICS[k][1]})." for k in keys]
    lines += ["", f"Perturbations: infidelity subtracts Gaussian noise (std {header['infidelity_std']} in normalised "
              f"units, the same on the three colour channels) {header['perturbations']} times per image; "
              f"max-sensitivity adds uniform noise in +-{header['sensitivity_radius']} (captum's default) "
              f"{header['perturbations']} times; both on the first {header['sensitivity_n']} images.",
              "Localisation scores the positive part of each map (evidence for the class); the plain gradient "
              "and the edge map by magnitude, their sign being no evidence."]
    notes = [f"- {name}: {note}" for name in names for note in summary[name]["notes"]]
    if notes:
        lines += ["", "## Notes", ""] + notes
    problems = [f"- {md_text(p['image'])}: mask {md_text(p['mask'])}: {md_text(p['reason'])}"
                for p in header.get("mask_problem_list", [])]
    if problems:
        lines += ["", "## Masks that could not be read", ""] + problems[:50]
        if len(problems) > 50:
            lines.append(f"- ... and {len(problems) - 50} more (all in explain_eval.json)")
    return "\n".join(lines) + "\n"


def _plots(out: Path, summary: dict) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..._io import write_bytes

    written = []
    fig, ax = plt.subplots(figsize=(7, 4))
    labels = []
    for name, entry in summary.items():
        curve = entry["randomisation"]
        if not curve:
            continue
        xs = np.arange(len(curve) + 1)
        mean = [1.0] + [c["abs"]["mean"] for c in curve]
        low = [1.0] + [c["abs"]["low"] for c in curve]
        high = [1.0] + [c["abs"]["high"] for c in curve]
        ax.plot(xs, mean, marker="o", label=name)
        ax.fill_between(xs, low, high, alpha=0.2)
        labels = ["trained"] + [c["stage"].split("+")[0] for c in curve]
    if labels:
        ax.set_xticks(np.arange(len(labels)), labels, rotation=30, ha="right", fontsize=8)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_ylabel("Spearman of |map| with the trained model's")
    ax.set_title("Cascading randomisation (from the head down)")
    if labels:  # no curve (only CRP, which is not randomised): no legend to draw
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no method randomised (CRP's map is LRP's)", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    written.append(_save(fig, out / "randomisation.png", write_bytes))

    keys = [k for k in ("mass_accuracy_lesion", "rank_accuracy_lesion", "pointing_game_lesion",
                        "feature_share_melanoma_features", "blockiness", "blockiness_displayed",
                        "mass_accuracy_artifact", "total_sign_agrees", "concept_abs_cosine", "concept_purity")
            if any(summary[n]["metrics"].get(k, {}).get("mean") is not None for n in summary)]
    if keys:
        fig, axes = plt.subplots(1, len(keys), figsize=(3.0 * len(keys), 3.6), squeeze=False)
        for ax, key in zip(axes[0], keys):
            names = [n for n in summary if summary[n]["metrics"].get(key, {}).get("mean") is not None]
            cis = [summary[n]["metrics"][key] for n in names]
            means = np.array([c["mean"] for c in cis])
            err = np.array([[m - c["low"] for m, c in zip(means, cis)], [c["high"] - m for m, c in zip(means, cis)]])
            ax.bar(np.arange(len(names)), means, yerr=err, capsize=3, color="tab:blue")
            ax.set_xticks(np.arange(len(names)), names, rotation=45, ha="right", fontsize=7)
            ax.set_title(key, fontsize=8)
        fig.tight_layout()
        written.append(_save(fig, out / "metrics.png", write_bytes))
    return written


def _save(fig, path: Path, write_bytes) -> str:
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    write_bytes(path, buffer.getvalue())
    return path.name


def _region_areas(images) -> dict | None:
    """The mean share of the image each feature region covers, over the scored melanoma images."""
    from .runner import feature_regions

    found = feature_regions(images)
    if found is None or not found[0].any():
        return None
    scored, regions = found
    return {"images": int(scored.sum()),
            **{name: round(float(masks[scored].mean()), 4) for name, masks in regions.items()}}


def write_report(out: Path, scores, *, run: Path, data: Path, images, meta, spec, seed: int,
                 sensitivity_n: int) -> dict:
    from .runner import INFIDELITY_NOISE_STD, PERTURBATIONS, SENSITIVITY_RADIUS

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(scores, seed)
    header = {"run": str(run), "data": str(data), "arch": spec.name, "classes": meta.classes,
              "n": len(images.paths), "seed": seed, "skipped": len(images.skipped),
              "mask_problems": len(images.mask_problems),
              "infidelity_std": INFIDELITY_NOISE_STD, "sensitivity_radius": SENSITIVITY_RADIUS,
              "perturbations": PERTURBATIONS, "sensitivity_n": sensitivity_n,
              "image_size": meta.preprocessing.size, "default_composite": spec.composite,
              "concept_layer": spec.default_concept_layer, "concept_choice": spec.concept_choice,
              "feature_region_areas": _region_areas(images),
              "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    report = {**header, "skipped_images": images.skipped, "mask_problem_list": images.mask_problems,
              "methods": summary}
    report["plots"] = _plots(out, summary)
    write_json(out / "explain_eval.json", report)
    write_text(out / "explain_eval.md", _markdown(summary, {**header, "mask_problem_list": images.mask_problems}))
    return report

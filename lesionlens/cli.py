"""`lesionlens <command>`: parses arguments and calls the layers; nothing else.

Heavy imports (torch, timm) happen inside the command that needs them, so `--help` is instant.
Exit codes: 0 success, 1 partial failure (some inputs bad, the rest processed), 2 usage or
configuration error (a LesionlensError, or a file the OS refuses), 3 internal error (a bug:
rerun with --debug and report the traceback). Errors are one line naming the file and the
reason.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .errors import UsageError, one_line
from .training.rundir import REVISION_METHODS

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
log = logging.getLogger("lesionlens")


def _cmd_synth(args) -> int:
    from .data.synth import generate

    classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    csv_path = generate(
        Path(args.out), n=args.n, size=args.size, seed=args.seed, classes=classes,
        artifact=args.artifact, artifact_rate=args.artifact_rate, artifact_class=args.artifact_class,
        artifact_rate_other=args.artifact_rate_other, aspect=args.aspect, lookalike_rate=args.lookalike_rate,
        progress=not args.quiet,
    )
    print(f"wrote {args.n} images to {args.out} (metadata: {csv_path})")
    return EXIT_OK


def _artifact_choices() -> list[str]:
    from .data.frames import FRAME_STYLES

    return ["ring", *(f"ring:{style}" for style in FRAME_STYLES), "ruler", "ink", "patch", "none"]


def _train_config(args):
    from .training.config import TrainConfig

    names = [f for f in TrainConfig.__dataclass_fields__ if f not in ("progress",)]
    return TrainConfig(progress=not args.quiet, **{name: getattr(args, name) for name in names})


def _cmd_train(args) -> int:
    from .training.fit import train
    from .training.rundir import RunDir

    run = RunDir(train(_train_config(args)))
    metrics, meta = run.read_metrics(), run.read_metadata()
    val = metrics["val"]
    print(f"run: {run.path}  best epoch {metrics['best_epoch']}  val ROC-AUC {val['roc_auc']}  "
          f"sensitivity {val.get('sensitivity')}  specificity {val.get('specificity')}")
    skipped = meta.data.get("skipped_unreadable", 0)
    if skipped:
        print(f"{skipped} unreadable image(s) were skipped (listed in {run.summary_file})", file=sys.stderr)
    return EXIT_PARTIAL if skipped else EXIT_OK


def _cmd_evaluate(args) -> int:
    from ._io import write_json
    from .training.evaluate import evaluate

    metrics = evaluate(Path(args.run), Path(args.data), Path(args.image_root) if args.image_root else None,
                       device=args.device, batch_size=args.batch_size, progress=not args.quiet)
    if args.out:
        write_json(Path(args.out), metrics)
    shown = {k: metrics.get(k) for k in ("n", "roc_auc", "accuracy", "balanced_accuracy", "sensitivity",
                                         "specificity", "threshold", "skipped_unreadable")}
    isic = metrics["isic"]
    shown["isic"] = {key: isic[key] for key in ("balanced_multiclass_accuracy", "partial_auc_above_80_sensitivity")
                     if key in isic}
    print(json.dumps(shown, indent=2))
    return EXIT_PARTIAL if metrics["skipped_unreadable"] else EXIT_OK


def _cmd_export(args) -> int:
    from .export import ExportOptions, export_run

    options = ExportOptions(
        fp16=args.fp16, uint8_input=args.uint8_input, int8=args.int8,
        triton_repo=Path(args.triton_repo) if args.triton_repo else None,
        data=Path(args.data) if args.data else None, image_root=Path(args.image_root) if args.image_root else None,
        max_images=args.max_images, min_confidence=args.flag_uncertain_below, opset=args.opset,
    )
    report = export_run(Path(args.run), Path(args.out), options)
    for name, result in report["variants"].items():
        print(f"{Path(args.out) / name}: max |probs diff| {result['max_abs_probs_diff']:.2e}, "
              f"top-1 agreement {result['min_top1_agreement']:.4f}")
    if "triton" in report:
        print(f"triton repository: {report['triton']['config']}")
    return EXIT_OK


def _cmd_predict(args) -> int:
    from .runtime.batch import predict_paths

    predictions, classifier, found = predict_paths(Path(args.model), args.inputs, Path(args.out) if args.out else None,
                                                   args.provider, args.batch_size, progress=not args.quiet,
                                                   fmt=args.format)
    failed = [p for p in predictions if not p.ok]
    for p in failed:
        print(f"error: {one_line(p.source)}: {p.error}", file=sys.stderr)
    if found.not_images:
        print(f"passed over {len(found.not_images)} file(s) that are not images "
              f"(e.g. {one_line(found.not_images[0])})", file=sys.stderr)
    flagged = sum(p.flagged for p in predictions)
    print(f"{len(predictions)} input(s): {len(predictions) - len(failed)} classified ({flagged} flagged), "
          f"{len(failed)} failed; provider {classifier.provider}" + (f"; results in {args.out}" if args.out else ""),
          file=sys.stderr)
    if not predictions:
        raise UsageError(f"no images found in {', '.join(one_line(a) for a in args.inputs)}")
    return EXIT_PARTIAL if failed else EXIT_OK


def _cmd_explain(args) -> int:
    from .explain.files import explain_file

    if args.concept_choice and args.method not in ("crp", "attention_crp"):
        raise UsageError(f"--concept-choice applies to crp and attention_crp, not --method {args.method}")

    png, summary = explain_file(Path(args.run), Path(args.image), args.method, args.target,
                                Path(args.out) if args.out else None, args.concepts, args.concept_choice)
    print(f"{args.method} heatmap for class {summary['target_label']!r} (predicted {summary['prediction']['label']!r}): "
          f"{png} (+ {png.with_suffix('.json').name})")
    return EXIT_OK


def _cmd_explain_eval(args) -> int:
    from .explain.evaluation.runner import run_explain_eval

    methods = [m for part in args.methods for m in part.split(",") if m] if args.methods else None
    from .training.rundir import RunDir

    out = Path(args.out) if args.out else RunDir(args.run).explain_eval
    report = run_explain_eval(Path(args.run), Path(args.data), out, n=args.n, methods=methods,
                              seed=args.seed, sensitivity_n=args.sensitivity_n, batch=args.batch_size,
                              image_root=Path(args.image_root) if args.image_root else None, quiet=args.quiet)
    for item in report["skipped_images"]:
        print(f"skipped {one_line(item['path'])}: {item['reason']}", file=sys.stderr)
    for item in report["mask_problem_list"]:
        print(f"mask of {one_line(item['image'])}: {one_line(item['mask'])}: {item['reason']} (scored without "
              "localisation)", file=sys.stderr)
    print(f"explain-eval: {len(report['methods'])} method(s) on {report['n']} images -> "
          f"{out / 'explain_eval.md'} (+ explain_eval.json, {', '.join(report['plots'])})")
    return EXIT_PARTIAL if report["skipped_images"] or report["mask_problem_list"] else EXIT_OK


def _cmd_audit(args) -> int:
    from .audit import run_audit

    if args.compare and not args.run:
        raise UsageError("--compare needs --run (the revised run to compare with the --compare run)")
    report = run_audit(Path(args.data), Path(args.out), run=Path(args.run) if args.run else None,
                       heldout=Path(args.heldout) if args.heldout else None, n=args.n, seed=args.seed,
                       image_root=Path(args.image_root) if args.image_root else None, quiet=args.quiet,
                       compare=Path(args.compare) if args.compare else None)
    flagged = [f for f in report["findings"] if f["flagged"]]
    for f in flagged:
        print(f"flagged: {f['summary']}")
    print(f"{report['images']} image(s) audited, {len(flagged)} finding(s) flagged; report in "
          f"{Path(args.out) / 'audit.md'}")
    problems = [f for f in report["findings"] if f["kind"] in ("unreadable", "unreadable_mask") and f["flagged"]]
    for f in problems:
        print(f"error: {one_line(f['summary'])}", file=sys.stderr)
    return EXIT_PARTIAL if problems else EXIT_OK


def _cmd_revise(args) -> int:
    from .revise import default_method, run_revise

    method = args.method or default_method(args.artifact)  # one source for the default: the revise package's
    say = (lambda what: None) if args.quiet else (lambda what: print(f"revise: {what}", file=sys.stderr))
    epochs = {"epochs": args.epochs} if args.epochs else {}  # else the revise package's measured default
    out = run_revise(Path(args.run), Path(args.data), Path(args.out), method, artifact=args.artifact,
                     layer=args.layer, seed=args.seed, progress=say, **epochs)
    print(f"revised run: {out} (method {method}, artifact {args.artifact}); audit it with "
          f"`lesionlens audit --data DATA --run {out} --compare {args.run} --out {out}/audit`")
    return EXIT_OK


def _cmd_report(args) -> int:
    from .report import build_report

    executed, page = build_report([Path(r) for r in args.run], Path(args.data), Path(args.out),
                                  gallery=args.gallery, max_images=args.max_images)
    print(f"report: {page} (executed notebook: {executed})")
    return EXIT_OK


def _cmd_demo(args) -> int:
    from .demo.app import launch

    launch(Path(args.model), Path(args.run), sidecar=args.sidecar, token=args.token, share=args.share,
           auth=args.auth, host=args.host, port=args.port, device=args.device, public=args.public,
           revised=Path(args.revised) if args.revised else None)
    return EXIT_OK


def _cmd_atlas(args) -> int:
    from .explain.atlas import build_atlas

    samples = None
    if args.data:
        from .data.readers import read_dataset, restrict_to_classes
        from .training.rundir import RunDir

        classes = RunDir(args.run).read_metadata().classes
        samples = restrict_to_classes(read_dataset(Path(args.data), Path(args.image_root) if args.image_root else None),
                                      classes).samples
    result = build_atlas(Path(args.run), samples, args.layer, args.max_images, args.batch_size)
    for path, reason in result.unreadable:
        print(f"skipped {one_line(path)}: {reason}", file=sys.stderr)
    print(f"concept atlas of {result.images} image(s) written to {result.folder}")
    return EXIT_PARTIAL if result.unreadable else EXIT_OK


def _cmd_serve(args) -> int:
    from .sidecar.server import serve

    serve(args.model, args.run, args.host, args.port, args.device, token=args.token,
          allowed_hosts=args.allowed_host, docs=args.docs)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    from .explain.concept_choice import CHOICES as CONCEPT_CHOICES
    from .ranges import BATCH, CONCEPTS, COUNT, IMAGE_SIZE, OPSET, PORT, PROBABILITY, SEED, TRAIN, Bounds, flag
    from .training.architectures import architectures
    from .training.config import TrainConfig

    default = TrainConfig.default

    parser = argparse.ArgumentParser(prog="lesionlens", description="An explainable skin-lesion classifier.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="generate a synthetic dermoscopy dataset with ground-truth masks")
    p.add_argument("out")
    p.add_argument("--n", type=COUNT.parse, default=600)
    p.add_argument("--size", type=IMAGE_SIZE.parse, default=128)
    p.add_argument("--seed", type=SEED.parse, default=0)
    p.add_argument("--classes", default="benign,melanoma", help="comma-separated class names")
    p.add_argument("--artifact", default="none", choices=_artifact_choices(),
                   help="ring draws a frame style at random per image; ring:STYLE one style")
    p.add_argument("--artifact-rate", type=PROBABILITY.parse, default=0.0, help="rate in --artifact-class images")
    p.add_argument("--artifact-class", default=None, help="default: the melanoma-like class")
    p.add_argument("--artifact-rate-other", type=PROBABILITY.parse, default=0.0, help="rate in all other classes")
    p.add_argument("--aspect", default="1:1", help="width:height of the photos, e.g. 4:3 (shorter side = --size)")
    p.add_argument("--lookalike-rate", type=PROBABILITY.parse, default=0.0,
                   help="share of artifact-free images given a frame look-alike (dark skin, a corner shadow...)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("train", help="train a model into a run directory")
    recipe = "default: the architecture's recipe (see the README)"
    p.add_argument("--data", help="class-folder dataset or ground-truth CSV (ISIC 2016-2020, image,label)")
    p.add_argument("--image-root", help="folder the CSV's image names resolve against (default: its folder)")
    p.add_argument("--arch", choices=architectures())
    p.add_argument("--out", required=True, help="run directory")
    for name in ("epochs", "image_size", "batch_size", "lr", "weight_decay", "warmup_epochs"):
        p.add_argument(flag(name), type=TRAIN[name].parse, help=f"{TRAIN[name].describe()}; {recipe}")
    p.add_argument("--seed", type=SEED.parse, default=default("seed"))
    p.add_argument("--device", default=default("device"), choices=["auto", "cpu", "cuda"])
    p.add_argument("--pretrained", default=default("pretrained"),
                   help="'imagenet' (timm weights, needs the network) or a .safetensors path")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.add_argument("--target-sensitivity", type=TRAIN["target_sensitivity"].parse, default=default("target_sensitivity"))
    p.add_argument("--val-fraction", type=TRAIN["val_fraction"].parse, default=default("val_fraction"))
    p.add_argument("--test-fraction", type=TRAIN["test_fraction"].parse, default=default("test_fraction"))
    p.add_argument("--patience", type=TRAIN["patience"].parse, default=default("patience"),
                   help="early-stopping patience in epochs")
    p.add_argument("--workers", type=TRAIN["workers"].parse, default=default("workers"),
                   help="data loader workers (-1: auto)")
    p.add_argument("--positive-class", default=default("positive_class"),
                   help="default: melanoma/malignant/MEL if present")
    p.add_argument("--balance", default=default("balance"), choices=["weights", "none"])
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="score a run on a dataset at the run's threshold")
    p.add_argument("run")
    p.add_argument("--data", required=True)
    p.add_argument("--image-root")
    p.add_argument("--out", help="write the full metrics as JSON")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--batch-size", type=BATCH.parse, default=64)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("export", help="export a run to ONNX (validated), with optional variants")
    p.add_argument("run")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--fp16", action="store_true", help="also model.fp16.onnx (for GPUs)")
    p.add_argument("--uint8-input", action="store_true", help="also model.uint8.onnx: uint8 NHWC in, normalised in the graph")
    p.add_argument("--int8", action="store_true", help="also model.int8.onnx: static int8, calibrated on real images (CPU)")
    p.add_argument("--triton-repo", help="write a Triton model repository here")
    p.add_argument("--data", help="real images for validation / calibration (default: the run's own splits)")
    p.add_argument("--image-root")
    p.add_argument("--max-images", type=COUNT.parse, default=64)
    p.add_argument("--flag-uncertain-below", type=PROBABILITY.parse, default=0.0,
                   help="also flag predictions whose top probability is below this (0 to 1; 0: off)")
    p.add_argument("--opset", type=OPSET.parse, default=17, help=f"ONNX opset, {OPSET.describe()}")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("predict", help="classify images with an exported ONNX model (no torch needed)")
    p.add_argument("model", help="MODEL.onnx")
    p.add_argument("inputs", nargs="+", help="image files, folders, globs")
    p.add_argument("--out", help="results.csv or results.jsonl (default: CSV on stdout)")
    p.add_argument("--format", choices=["csv", "jsonl", "isic"],
                   help="default: from --out's suffix (CSV on stdout). isic: the ISIC challenge submission "
                        "layout (image name without extension, one probability column per class); inputs "
                        "that fail are reported on stderr, not written")
    p.add_argument("--provider", default="auto", choices=["auto", "tensorrt", "cuda", "cpu"])
    p.add_argument("--batch-size", type=BATCH.parse, default=32)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("explain", help="heatmap for one image: lrp, crp, gradcam or attention")
    p.add_argument("run")
    p.add_argument("image")
    p.add_argument("--method", default="lrp", choices=["lrp", "crp", "gradcam", "attention", "attention_crp"],
                   help="attention and attention_crp need an architecture with an attention head")
    p.add_argument("--target", help="class name or index to explain (default: the predicted class)")
    p.add_argument("--concepts", type=CONCEPTS.parse, default=8, help="CRP: how many concepts (1-64)")
    p.add_argument("--concept-choice", choices=CONCEPT_CHOICES,
                   help="CRP: top (the largest shares) or distinct (evidence for the class, each next where "
                        "the ones before have none); default: the architecture's (README)")
    p.add_argument("--out", help="overlay PNG path (default: IMAGE_STEM.METHOD.png beside the image)")
    p.set_defaults(func=_cmd_explain)

    p = sub.add_parser("explain-eval", help="measure the explanation methods: randomisation, localisation, "
                                            "infidelity/sensitivity, CRP distinctness")
    p.add_argument("run")
    p.add_argument("--data", required=True, help="images to score (the synthetic generator's masks are used)")
    p.add_argument("--out", help="report folder (default: RUN/explain_eval, where the demo's model card reads it)")
    p.add_argument("--n", type=COUNT.parse, default=200, help="images to score (default 200)")
    p.add_argument("--methods", action="append",
                   help="comma-separated (default: the architecture's methods + gradient, input_x_gradient, "
                        "random); also edge, lrp:<composite>, crp:<composite>, crp@<layer> (another "
                        "concept layer of the architecture)")
    p.add_argument("--seed", type=SEED.parse, default=0)
    p.add_argument("--sensitivity-n", type=Bounds(0, whole=True).parse, default=32,
                   help="images for infidelity and max-sensitivity (each re-explains 10 perturbations); 0: skip")
    p.add_argument("--batch-size", type=BATCH.parse, default=16)
    p.add_argument("--image-root")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_explain_eval)

    p = sub.add_parser("audit", help="find dataset shortcuts (the microscope ring, metadata columns, duplicates) "
                                     "and, with --run, whether the model uses them")
    p.add_argument("--data", required=True, help="folder of class subfolders or a CSV (any layout train reads)")
    p.add_argument("--run", help="a run directory: adds the model checks (relevance, SpRAy, counterfactuals)")
    p.add_argument("--heldout", help="with --run: a separate labelled set on which to check the run's threshold")
    p.add_argument("--out", required=True, help="folder for audit.json, audit.md and the figures")
    p.add_argument("--n", type=COUNT.parse, default=600, help="images for the model checks (default 600)")
    p.add_argument("--seed", type=SEED.parse, default=0)
    p.add_argument("--image-root")
    p.add_argument("--compare", help="with --run: the parent run; the report puts both models' findings side by side")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_audit)

    p = sub.add_parser("revise", help="remove a shortcut the audit found: a revised copy of a run "
                                      "(counterfactual augmentation, frame normalisation or removal, P-ClArC, "
                                      "RR-ClArC)")
    p.add_argument("run", help="the run directory to revise (it is not changed)")
    p.add_argument("--data", required=True, help="the run's training data (its masks or metadata name the artifact)")
    p.add_argument("--out", required=True, help="the new run directory")
    p.add_argument("--method", choices=REVISION_METHODS,
                   help="default: unframe for the ring, augment for any other artifact (the measurements' choice, README)")
    p.add_argument("--artifact", default="ring", help="ring (masks or the frame detector) or COLUMN=VALUE")
    p.add_argument("--layer", help="P-ClArC / RR-ClArC layer (default: the architecture's last feature map)")
    p.add_argument("--epochs", type=Bounds(1, 100, whole=True).parse,
                   help="fine-tuning epochs (default: the measured choice, README)")
    p.add_argument("--seed", type=SEED.parse, default=0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_revise)

    p = sub.add_parser("report", help="the executed notebook report (HTML): data, audit, metrics, ROC, "
                                      "explanations, explanation scores")
    p.add_argument("--run", action="append", required=True, help="a run directory (repeat to compare runs)")
    p.add_argument("--data", required=True, help="labelled data to score and explain on")
    p.add_argument("--out", required=True, help="folder for report.html and report.ipynb")
    p.add_argument("--gallery", type=Bounds(0, 64, whole=True).parse, default=3,
                   help="images in the explanation gallery (0 to 64)")
    p.add_argument("--max-images", type=COUNT.parse, default=300, help="images scored for the metrics and ROC curves")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("demo", help="the Gradio demo: ONNX predictions, explanations, the model card")
    p.add_argument("--model", required=True, help="MODEL.onnx from lesionlens export")
    p.add_argument("--run", required=True, help="the run directory the model was exported from")
    p.add_argument("--sidecar", help="URL of a running `lesionlens serve` (default: explain in this process)")
    p.add_argument("--token", help="the sidecar's bearer token")
    p.add_argument("--share", action="store_true", help="a public gradio.live link (needs internet; off by default)")
    p.add_argument("--auth", help="USER:PASSWORD required to open the page (needed with --share or a "
                                  "non-loopback --host, unless --public)")
    p.add_argument("--public", action="store_true",
                   help="allow --share or a non-loopback --host without --auth (anyone with the address can use it)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=PORT.parse, default=7860)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--revised", help="a revision of --run (lesionlens revise): a tab explains both side by side")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("atlas", help="build the CRP concept atlas (relevance maximization) for a run")
    p.add_argument("run")
    p.add_argument("--data", help="images to search (default: the run's train + val splits)")
    p.add_argument("--image-root")
    p.add_argument("--layer", help="CRP layer (default: the architecture's concept layer, e.g. layer2)")
    p.add_argument("--max-images", type=COUNT.parse, default=None)
    p.add_argument("--batch-size", type=BATCH.parse, default=16)
    p.set_defaults(func=_cmd_atlas)

    p = sub.add_parser("serve", help="explanation sidecar (HTTP): heatmaps for flagged cases")
    p.add_argument("--model", required=True, help="the ONNX model production runs (its weights_sha256 is checked)")
    p.add_argument("--run", required=True, help="the run directory with the matching PyTorch weights")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=PORT.parse, default=8000)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--token", help="require 'Authorization: Bearer TOKEN' (default: $LESIONLENS_SIDECAR_TOKEN); "
                                   "required when --host is not a loopback address")
    p.add_argument("--allowed-host", action="append", default=[],
                   help="a Host header to accept besides localhost and --host (repeatable)")
    p.add_argument("--docs", action="store_true", help="serve /docs and /openapi.json")
    p.set_defaults(func=_cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .errors import LesionlensError

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except LesionlensError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # a path the user gave that the OS refuses: missing, permissions, full disk
        if args.debug:
            raise
        where = f"{one_line(exc.filename)}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # a bug: one line here, the traceback with --debug
        if args.debug:
            raise
        print(f"internal error: {type(exc).__name__}: {one_line(exc)} (this is a bug in lesionlens: rerun with "
              "--debug and report the traceback)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())

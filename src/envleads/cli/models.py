"""``envleads train``, ``evaluate``, ``models`` and ``labels``: the pollution-type classifier, its
registry's stages and its labelled data.

The work is in :mod:`envleads.models.pollution`, :mod:`envleads.models.registry` (with the
comparison of :mod:`envleads.models.registry_stages`) and :mod:`envleads.models.labelling`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict, List, Optional

from envleads.cli.arguments import add_command
from envleads.config import OperatorError

REGISTRY_HELP = "model registry folder"


def _write_json(path: Optional[str], document: Dict[str, Any]) -> None:
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(document, handle, ensure_ascii=False, indent=2)


# ------------------------------------------------------------------------------- train, evaluate
def _run_train(args: argparse.Namespace) -> int:
    from envleads.models import pollution, registry, registry_stages

    records = pollution.training_records(args.extra, args.include_shared)
    version = registry.train_and_register(records, registry_dir=args.out,
                                          command=registry_stages.invoked_command(),
                                          cv_folds=args.cv, data_files=registry.training_files_for(
                                              args.extra, args.include_shared))
    metadata = registry.read_metadata(version, args.out)
    print(f"registered pollution_type/{version}")
    print(registry_stages.after_train(version, args.out))
    if metadata.get("metrics"):
        print(pollution.format_report(metadata["metrics"]))
    _write_json(args.json_out, {"version": version, **metadata})
    return 0


def _gold_rows(args: argparse.Namespace) -> List[dict]:
    """The rows ``envleads evaluate`` scores: a part of the real labels or the ``--gold`` files."""
    from envleads.models import pollution, protocol

    if not args.part:
        return pollution.labelled_files(args.gold)
    shared = pollution.shared_data_dir()
    if not shared:
        raise SystemExit("--part needs the shared data folder (../shared/data or $ENVLEADS_SHARED_DATA)")
    development, locked = protocol.real_parts(shared)
    return development if args.part == protocol.DEVELOPMENT else locked


def _run_evaluate(args: argparse.Namespace) -> int:
    from envleads.models import evaluation, pollution, protocol
    from envleads.models.registry_stages import training_rows_warning

    if bool(args.part) == bool(args.gold):
        raise SystemExit("give --part or --gold (one of them)")
    if args.cv and args.part == protocol.LOCKED:
        raise SystemExit("the locked part is only scored, never cross-validated on: use --part development")
    gold = _gold_rows(args)
    warning = None if args.cv else training_rows_warning(args.model, args.registry, gold)
    if args.cv:
        report = pollution.cross_validate(gold, folds=args.cv, seed=args.seed,
                                          extra_train=pollution.load_project_training()
                                          + pollution.labelled_files(args.extra))
    else:
        beam_args = ["--model_version", args.model]
        if args.registry:
            beam_args += ["--model_registry", args.registry]
        report = evaluation.evaluate_through_batch(gold, beam_args=beam_args)
    print(pollution.format_report(report))
    if warning:  # printed before and after the table: a long report must not scroll it away
        print(warning, file=sys.stderr)
    _write_json(args.json_out, report)
    return 0


def _add_train_evaluate(subparsers) -> None:
    train = add_command(subparsers, "train", _run_train, "train the pollution-type classifier and register it")
    train.add_argument("--extra", "--data", nargs="*", default=[], metavar="FILE", dest="extra",
                       help="labelled JSON Lines files (title, text, labels; or id + labels, joined "
                            "with the shared texts) to train on besides the project's rows and "
                            "the development part of the shared labels")
    train.add_argument("--out", default=None, metavar="REGISTRY_DIR",
                       help="model registry folder (default: $ENVLEADS_REGISTRY or models/registry)")
    train.add_argument("--include-shared", action=argparse.BooleanOptionalAction, default=True,
                       help="also train on the development part of the shared real labels when present "
                            "(the locked part is never trained on)")
    train.add_argument("--cv", type=int, default=0, metavar="K",
                       help="also run K-fold CV on the real rows and store it as the metrics")
    train.add_argument("--json-out", default=None, metavar="PATH", help="write metadata as JSON")

    evaluate_parser = add_command(subparsers, "evaluate", _run_evaluate,
                                  "score a model through envleads batch on labelled data, or cross-validate")
    evaluate_parser.add_argument("--model", default="production",
                                 help="VERSION, 'production' or 'latest'")
    evaluate_parser.add_argument("--registry", default=None, metavar="REGISTRY_DIR",
                                 help=REGISTRY_HELP)
    evaluate_parser.add_argument("--part", choices=("development", "locked"), default=None,
                                 help="a part of the shared real labels (models/protocol.py): "
                                      "'locked' is the reported result, 'development' is for choices")
    evaluate_parser.add_argument("--gold", nargs="*", default=[], metavar="FILE",
                                 help="gold JSON Lines files (id, title, text, labels; or id + labels)")
    evaluate_parser.add_argument("--cv", type=int, default=0, metavar="K",
                                 help="run K-fold cross-validation on the gold rows instead")
    evaluate_parser.add_argument("--extra", nargs="*", default=[], metavar="FILE",
                                 help="with --cv: labelled files added to every training side only")
    evaluate_parser.add_argument("--seed", type=int, default=0, help="CV fold seed")
    evaluate_parser.add_argument("--json-out", default=None, metavar="PATH",
                                 help="write the report as JSON")


# ---------------------------------------------------------------- models list|compare|promote|rollback
def _operator_errors(function):
    """Turns a missing or unusable version into the CLI's one-line error (exit code 2)."""
    def run(args: argparse.Namespace) -> int:
        from envleads.models import registry

        try:
            return function(args)
        except (registry.ModelNotFoundError, registry.ModelMismatchError) as error:
            raise OperatorError(str(error)) from error
    run.__doc__ = function.__doc__
    return run


@_operator_errors
def _run_list(args: argparse.Namespace) -> int:
    """Prints the registered versions, which is production, and the recent promotions."""
    from envleads.models import registry
    from envleads.models.registry_stages import format_versions, version_rows

    rows = version_rows(args.registry)
    aliases = registry.read_aliases(args.registry)
    print(f"{registry.MODEL_KIND} models in "
          f"{os.path.join(args.registry or registry.default_registry_dir(), registry.MODEL_KIND)} "
          "(* production; locked: figures on the locked part of the real labels, from training)")
    print(format_versions(rows, aliases))
    _write_json(args.json_out, {"versions": rows, **aliases})
    return 0


@_operator_errors
def _run_promote(args: argparse.Namespace) -> int:
    """Points production at a version; the pipeline's next run uses it."""
    from envleads.models import registry
    from envleads.models.registry_stages import invoked_command

    entry = registry.promote(args.version, args.registry, command=invoked_command())
    current = registry.production_version(args.registry)
    if entry is None:
        print(f"{current} already is production; nothing changed")
    else:
        print(f"production: {entry['previous']} -> {current} "
              "(undo with `envleads models rollback`)")
    return 0


@_operator_errors
def _run_rollback(args: argparse.Namespace) -> int:
    """Points production back at the version promoted before the current one."""
    from envleads.models import registry
    from envleads.models.registry_stages import invoked_command

    entry = registry.rollback(args.registry, command=invoked_command())
    print(f"production rolled back: {entry['previous']} -> {entry['version']}")
    return 0


@_operator_errors
def _run_compare(args: argparse.Namespace) -> int:
    """Scores OLD and NEW on identical rows and says which differences are beyond noise."""
    from envleads.models import registry
    from envleads.models.registry_stages import compare_on, comparison_data, format_comparison

    old_model = registry.load_model(args.old, args.registry)
    new_model = registry.load_model(args.new, args.registry)
    sets, skipped = comparison_data(args.gold or [], args.locked)
    for message in skipped:
        print(message)
    if not sets:
        raise OperatorError("nothing to compare on: no shared data for the locked part and no "
                            "--gold FILE")
    results = []
    for name, records in sets:
        result = compare_on(name, records, (old_model, new_model), args.registry,
                            args.resamples, args.seed)
        print(format_comparison(name, result))
        results.append(result)
    _write_json(args.json_out, {"old": old_model.version, "new": new_model.version,
                                "skipped": skipped, "datasets": results})
    return 0


def _add_models(subparsers) -> None:
    """``envleads models`` with its actions ``list``, ``compare``, ``promote``, ``rollback``."""
    from envleads.models.registry_stages import DEFAULT_RESAMPLES

    models = add_command(subparsers, "models", None,
                         "list, compare, promote and roll back registered pollution-type models")
    actions = models.add_subparsers(dest="models_action", metavar="ACTION", required=True)

    def action(name: str, help_text: str, func) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, help=help_text)
        parser.add_argument("--registry", default=None, metavar="REGISTRY_DIR",
                            help="model registry folder (default: $ENVLEADS_REGISTRY or "
                                 "models/registry)")
        parser.set_defaults(func=func)
        return parser

    listing = action("list", "registered versions, production marked, locked-part figures",
                     _run_list)
    listing.add_argument("--json-out", default=None, metavar="PATH", help="also write JSON")
    compare = action("compare", "score OLD and NEW on identical rows, with bootstrap intervals",
                     _run_compare)
    compare.add_argument("old", metavar="OLD", help="version, 'production' or 'latest'")
    compare.add_argument("new", metavar="NEW", help="version, 'production' or 'latest'")
    compare.add_argument("--gold", action="append", metavar="FILE",
                         help="also compare on this labelled JSON Lines file (repeatable)")
    compare.add_argument("--locked", action=argparse.BooleanOptionalAction, default=True,
                         help="compare on the locked part of the real labels (needs ../shared)")
    compare.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES,
                         help="bootstrap resamples of the rows")
    compare.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    compare.add_argument("--json-out", default=None, metavar="PATH", help="also write JSON")
    promote = action("promote", "make VERSION the production model the pipeline runs",
                     _run_promote)
    promote.add_argument("version", metavar="VERSION", help="a registered version, or 'latest'")
    action("rollback", "production back to the version promoted before the current one",
           _run_rollback)


# ------------------------------------------------------------------------------ labels import|queue
def _run_import(args: argparse.Namespace) -> int:
    """Imports a labelling tool's export as ``id`` + ``labels`` rows."""
    from envleads.models import pollution, protocol
    from envleads.models.labelling import import_labels, import_report, write_jsonl

    if not os.path.isfile(args.file):
        raise OperatorError(f"no such file: {args.file}")
    if os.path.abspath(args.out) == os.path.abspath(args.file):
        raise OperatorError("--out is the export itself: give another path")
    result = import_labels(args.file, args.format, args.id_key, args.from_name)
    if not result.rows:
        raise OperatorError(f"{args.file}: no row could be imported "
                            f"({dict(result.reasons()) or 'empty'}); nothing written")
    write_jsonl(result.rows, args.out)
    shared = pollution.shared_data_dir()
    known = set(protocol.shared_texts(shared)) if shared else None
    print("\n".join(import_report(result, args.out, known, protocol.project_labels())))
    return 0


def _queue_messages(args: argparse.Namespace) -> List[dict]:
    from envleads.models import pollution
    from envleads.models.labelling import labelled_ids, read_messages

    shared = pollution.shared_data_dir()
    source = args.source or (os.path.join(shared, "unlabelled_real.jsonl") if shared else None)
    if not source or not os.path.isfile(source):
        raise OperatorError("no messages to queue: give --source FILE (id, title, text) or put "
                            "the shared data (../shared/data or $ENVLEADS_SHARED_DATA) beside "
                            "this checkout")
    done = labelled_ids(args.labelled or [], shared)
    return [m for m in read_messages(source) if m["id"] not in done]


def _run_queue(args: argparse.Namespace) -> int:
    """Writes the least confident unlabelled messages (id, guess, confidence) to label next."""
    from envleads.models import registry
    from envleads.models.labelling import (inside_repo, label_studio_tasks, rank_queue, score_messages,
                                            write_jsonl)

    if args.label_studio and inside_repo(args.label_studio):
        raise OperatorError(f"--label-studio {args.label_studio} is inside the repository; it "
                            "holds complainant texts, which must never be committed: write it "
                            "outside the checkout")
    try:
        model = registry.load_model(args.model, args.registry)
    except (registry.ModelNotFoundError, registry.ModelMismatchError) as error:
        raise OperatorError(str(error)) from error
    messages = _queue_messages(args)
    queue = rank_queue(score_messages(model, messages), args.n, args.by)
    write_jsonl(queue, args.out)
    print(f"{len(queue)} of {len(messages)} unlabelled messages, least sure first by {args.by} "
          f"({model.version}), to {args.out}: id, guess, confidence, margin (no text)")
    if args.label_studio:
        by_id = {m["id"]: m for m in messages}
        with open(args.label_studio, "w", encoding="utf-8") as handle:
            json.dump(label_studio_tasks(queue, by_id), handle, ensure_ascii=False, indent=1)
        print(f"warning: {args.label_studio} holds complainant texts for Label Studio: keep it "
              "out of the repository, never commit it, delete it after labelling", file=sys.stderr)
    return 0


def _add_labels(subparsers) -> None:
    """``envleads labels`` with its actions ``import`` and ``queue``."""
    from envleads.models.labelling import DEFAULT_QUEUE, FORMATS

    labels = add_command(subparsers, "labels", None,
                         "import labelling-tool exports as id + labels; queue messages to label")
    actions = labels.add_subparsers(dest="labels_action", metavar="ACTION", required=True)

    imp = actions.add_parser("import", help="a Label Studio JSON / JSON-MIN export or an id,labels "
                                            "CSV to the project's id + labels JSON Lines")
    imp.add_argument("file", metavar="FILE", help="the export")
    imp.add_argument("--out", required=True, metavar="PATH",
                     help="JSON Lines of id + labels (no text), e.g. models/labels/"
                          "real_labels.<name>.jsonl or a file for `envleads train --extra`")
    imp.add_argument("--format", choices=FORMATS, default="auto",
                     help="auto: .csv by name; Label Studio JSON, JSON-MIN or JSON Lines by "
                          "content")
    imp.add_argument("--id-key", default="id",
                     help="task data key (CSV column) holding the message id; JSON-MIN overwrites "
                          "`id` with the task number, so use message_id there")
    imp.add_argument("--from-name", default=None, metavar="NAME",
                     help="only this Choices control (default: every choices result)")
    imp.set_defaults(func=_run_import)

    queue = actions.add_parser("queue", help="the least confident unlabelled messages to label "
                                             "next (active learning)")
    queue.add_argument("--out", default=DEFAULT_QUEUE, metavar="PATH",
                       help="JSON Lines of id, guess, confidence, margin (no text)")
    queue.add_argument("--n", type=int, default=100, help="how many messages")
    queue.add_argument("--source", default=None, metavar="FILE",
                       help="messages (id, title, text) to choose from (default: the shared "
                            "unlabelled_real.jsonl)")
    queue.add_argument("--labelled", nargs="*", default=[], metavar="FILE",
                       help="id + labels files whose ids are labelled already (besides "
                            "models/labels/ and pollution_dev.jsonl)")
    queue.add_argument("--by", choices=("confidence", "margin"), default="confidence",
                       help="least sure by confidence in the label set, or by the probability "
                            "closest to a threshold")
    queue.add_argument("--model", default="production", help="VERSION, 'production' or 'latest'")
    queue.add_argument("--registry", default=None, metavar="REGISTRY_DIR",
                       help=REGISTRY_HELP)
    queue.add_argument("--label-studio", default=None, metavar="PATH",
                       help="also write Label Studio tasks WITH the texts here (outside the "
                            "repository; never commit it)")
    queue.set_defaults(func=_run_queue)


def register(subparsers) -> None:
    """Adds ``train``, ``evaluate``, ``models`` and ``labels``."""
    _add_train_evaluate(subparsers)
    _add_models(subparsers)
    _add_labels(subparsers)

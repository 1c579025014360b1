"""``envleads models list|compare|promote|rollback``: the analyst's stages of the model registry.

The pipeline runs the version the ``production`` alias names (see :mod:`envleads.models.registry`);
training only registers a version. An analyst lists the versions, compares a candidate with
production on identical rows (the locked part of the real labels, and any labelled file), promotes
it when the difference is beyond noise, and rolls back with one command.

``compare`` scores both models with :func:`envleads.models.pollution.score_predictions` (the one
scorer of the project) and gives each difference a 95% interval from a paired bootstrap over rows:
both models are scored on the same resampled rows, so the interval reflects which rows happen to
be in the set, not two independent noises.

The command line itself (argument parsing, printing, exit codes) is :mod:`envleads.cli.models`.
"""
from __future__ import annotations

import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from envleads.models import registry

DEFAULT_RESAMPLES = 1000
METRICS = ("micro F1", "macro F1 (>=10 rows)", "macro F1 (all)", "env/not accuracy",
           "exact label set")


def invoked_command() -> str:
    """The ``envleads`` command line this process runs, as recorded with a version or a promotion."""
    return " ".join(["envleads"] + sys.argv[1:])


def after_train(version: str, registry_dir: Optional[str], command: Optional[str] = None) -> str:
    """What ``envleads train`` says after registering ``version``; promotes it only when the
    registry has no production model at all (a fresh clone), so a retrain never replaces a model
    an analyst promoted."""
    locked = registry.read_metadata(version, registry_dir).get("locked_metrics")
    figures = "" if not locked else (
        f"locked part (n={locked['n']}): micro F1 {locked['micro_f1']:.3f}, macro F1 (>=10 rows) "
        f"{locked['macro_f1_frequent']:.3f}, env/not accuracy {locked['env_accuracy']:.3f}"
        + (f"; trained on {locked['training_overlap']} of these rows: NOT A RESULT"
           if locked["training_overlap"] else "") + "\n")
    current = registry.production_version(registry_dir)
    if current is None:
        registry.promote(version, registry_dir, command=command or invoked_command(),
                         note="first model of a registry without a production model")
        return f"{figures}no production model existed: promoted {version} to production"
    return (f"{figures}not promoted: production is still {current}. Compare with `envleads models "
            f"compare {current} {version}`, then `envleads models promote {version}`")


def training_rows_warning(model: str, registry_dir: Optional[str], gold: Sequence[dict]
                          ) -> Optional[str]:
    """Prints (to stderr) and returns the loud warning of :func:`registry.overlap_warning` when
    ``gold`` holds training rows of ``model`` (a version, ``production`` or ``latest``)."""
    try:
        version = registry.resolve(model, registry_dir)
    except registry.ModelNotFoundError:
        return None  # the evaluation itself reports the missing model
    warning = registry.overlap_warning(version,
                                       registry.training_overlap(version, gold, registry_dir))
    if warning:
        print(warning, file=sys.stderr)
    return warning


# --------------------------------------------------------------------------------------- list
def _loadable(version: str, registry_dir: Optional[str]) -> str:
    reason = registry.unusable_reason(version, registry_dir)
    return "yes" if reason is None else "no: " + reason.split(" ", 1)[1]  # without the version


def version_rows(registry_dir: Optional[str]) -> List[Dict[str, Any]]:
    """One summary per registered version, oldest first (what ``list`` prints)."""
    production = registry.production_version(registry_dir)
    rows = []
    for version in registry.list_versions(registry_dir):
        metadata = registry.read_metadata(version, registry_dir)
        rows.append({"version": version, "production": version == production,
                     "created_at": metadata.get("created_at"),
                     "training_rows": metadata.get("training_rows"),
                     "data_files": len(metadata.get("data_files") or []),
                     "loadable": _loadable(version, registry_dir),
                     "locked_metrics": metadata.get("locked_metrics")})
    return rows


def format_versions(rows: Sequence[Dict[str, Any]], aliases: Dict[str, Any]) -> str:
    """The ``list`` table: newest last, production marked ``*``, locked-part figures if stored."""
    lines = [f"  {'version':<28}{'created (UTC)':<27}{'rows':>6}  {'locked: n':>9}{'micro':>7}"
             f"{'macro':>7}{'env':>7}  loadable"]
    for row in rows:
        locked = row["locked_metrics"] or {}
        figures = (f"{locked['n']:>9}{locked['micro_f1']:>7.3f}{locked['macro_f1_frequent']:>7.3f}"
                   f"{locked['env_accuracy']:>7.3f}" if locked else f"{'-':>9}{'':>21}")
        trained_on = (f"  (trained on {locked['training_overlap']} locked rows: not a result)"
                      if locked.get("training_overlap") else "")
        lines.append(f"{'*' if row['production'] else ' '} {row['version']:<28}"
                     f"{str(row['created_at']):<27}{str(row['training_rows']):>6}  {figures}  "
                     f"{row['loadable']}{trained_on}")
    history = aliases.get("history") or []
    production = aliases.get("aliases", {}).get(registry.PRODUCTION)
    lines.append(f"production: {production or 'none (run `envleads models promote VERSION`)'}")
    for entry in history[-5:]:
        lines.append(f"  {entry['at']}  {entry['action']:<8} {entry['version']}  (was "
                     f"{entry.get('previous') or 'none'}) by {entry['by']}: {entry['command']}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ compare
def figures(report: Dict[str, Any]) -> Dict[str, float]:
    """The compared figures of a :func:`~envleads.models.pollution.score_predictions` report."""
    out = {f"{label} F1": m["f1"] for label, m in report["per_label"].items()}
    out.update({"micro F1": report["micro_f1"], "macro F1 (>=10 rows)": report["macro_f1_frequent"],
                "macro F1 (all)": report["macro_f1_all"],
                "env/not accuracy": report["env_accuracy"],
                "exact label set": report["exact_match"]})
    return out


def predict_all(model, records: Sequence[dict], batch_size: int = 64) -> list:
    """The model's predictions for ``records``, in order (batched as in ``evaluate``)."""
    from envleads.models.pollution import record_docs

    docs = record_docs(records)
    predictions: list = []
    for start in range(0, len(docs), batch_size):
        predictions.extend(model.predict(docs[start:start + batch_size]))
    return predictions


def paired_bootstrap(records: Sequence[dict], old: Sequence[Any], new: Sequence[Any],
                     resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> Dict[str, Dict]:
    """Each figure of ``old`` and ``new`` on all rows, and the 95% percentile interval of
    ``new - old`` over ``resamples`` resamplings of the rows (the same rows for both models).

    A difference is ``beyond_noise`` when its interval excludes 0.
    """
    from envleads.models.pollution import score_predictions

    full_old = score_predictions(records, old)
    full_new = score_predictions(records, new)
    base_old, base_new = figures(full_old), figures(full_new)
    rng = np.random.default_rng(seed)
    diffs: Dict[str, List[float]] = {name: [] for name in base_old}
    for _ in range(resamples):
        rows = rng.integers(0, len(records), len(records))
        sample = [records[i] for i in rows]
        a = figures(score_predictions(sample, [old[i] for i in rows]))
        b = figures(score_predictions(sample, [new[i] for i in rows]))
        for name in diffs:
            diffs[name].append(b[name] - a[name])
    out = {}
    for name in base_old:
        low, high = (np.percentile(diffs[name], [2.5, 97.5]) if resamples else (0.0, 0.0))
        label = name[:-3] if name.endswith(" F1") and name[:-3] in full_old["per_label"] else None
        out[name] = {"old": base_old[name], "new": base_new[name],
                     "diff": round(base_new[name] - base_old[name], 4),
                     "low": round(float(low), 4), "high": round(float(high), 4),
                     "beyond_noise": bool(low > 0 or high < 0),
                     "support": full_old["per_label"][label]["support"] if label else len(records)}
    return out


def verdict(row: Dict[str, Any]) -> str:
    """``NEW better``, ``NEW worse``, ``within noise`` or ``no gold rows`` for one figure of
    :func:`paired_bootstrap`."""
    if not row["support"]:
        return "no gold rows"
    if not row["beyond_noise"]:
        return "within noise"
    return "NEW better" if row["diff"] > 0 else "NEW worse"


def format_comparison(name: str, result: Dict[str, Any]) -> str:
    """A readable table of one data set's comparison."""
    lines = [f"{name} (n={result['n']}): OLD {result['old']}  vs  NEW {result['new']}; label sets "
             f"differ on {result['disagreement']:.1%} of rows; paired bootstrap, "
             f"{result['resamples']} resamples, seed {result['seed']}, 95% interval of NEW - OLD",
             f"  {'figure':<22}{'support':>8}{'old':>8}{'new':>8}{'diff':>8}   "
             f"{'95% interval':<19}verdict"]
    for figure, row in result["metrics"].items():
        lines.append(f"  {figure:<22}{row['support']:>8}{row['old']:>8.3f}{row['new']:>8.3f}"
                     f"{row['diff']:>+8.3f}   [{row['low']:+.3f}, {row['high']:+.3f}]  "
                     f"{verdict(row)}")
    warnings = [registry.overlap_warning(result[role], result["overlap"][role])
                for role in ("old", "new")]
    return "\n".join([w for w in warnings if w] + lines)


def compare_on(name: str, records: Sequence[dict], models: Tuple[Any, Any],
               registry_dir: Optional[str], resamples: int, seed: int) -> Dict[str, Any]:
    """Scores both models on ``records`` (see :func:`paired_bootstrap`)."""
    old_model, new_model = models
    old = predict_all(old_model, records)
    new = predict_all(new_model, records)
    differ = sum(set(a.labels) != set(b.labels) for a, b in zip(old, new))
    return {"data": name, "n": len(records), "old": old_model.version, "new": new_model.version,
            "resamples": resamples, "seed": seed,
            "disagreement": differ / len(records) if records else 0.0,
            "overlap": {role: registry.training_overlap(model.version, records, registry_dir)
                        for role, model in (("old", old_model), ("new", new_model))},
            "metrics": paired_bootstrap(records, old, new, resamples, seed)}


def comparison_data(gold_files: Sequence[str], locked: bool) -> Tuple[List[Tuple[str, list]],
                                                                      List[str]]:
    """The labelled data sets to compare on, and a message for each one skipped."""
    from envleads.models import pollution, protocol

    sets, skipped = [], []
    if locked:
        shared = pollution.shared_data_dir()
        rows = protocol.real_parts(shared)[1]
        if rows:
            sets.append(("locked part of the real labels", rows))
        else:
            skipped.append("locked part skipped: no shared labelled data (../shared/data or "
                           "$ENVLEADS_SHARED_DATA) beside this checkout")
    for path in gold_files:
        sets.append((path, protocol.read_labelled(path, pollution.shared_data_dir())))
    return sets, skipped

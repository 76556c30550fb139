"""Results others can check: a run exported as one bundle, reproduced offline, and re-asked.

    promptopt export results/run-abc --to run-abc.zip     # manifest, records as sent, report
    promptopt reproduce run-abc.zip                       # 0 differences, or each one listed
    promptopt reproduce run-abc.zip --rerun 20            # has the hosted model drifted since?

A bundle is a zip of
- `manifest.json`: format, the versions of promptopt, DSPy, LiteLLM and Optuna that exported it,
  each run's plan, version and status, each model's identity (endpoint without credentials),
  endpoint kind, adapter and sampling settings, the seeds, each task's YAML with the sha256 of
  every data file and the item ids of each split, the report's settings, and the sha256 of every
  other entry (a changed entry is named when the bundle is read);
- `tables/NAME.jsonl`: every row of the store's per-run tables (records with each call's request
  as sent, statuses, stops, compiles, judge checks, a search's choices and anytime curve, run
  manifests), ordered by key;
- `report.json`, `report.md`, `report.tex` and `figures/*.svg`: what the exporter's promptopt reported;
- `programs/...`: the run folder's saved programs (when a run folder was exported).

The same store gives the same bytes: entries are sorted, stamped 1980-01-01 and hold no export
time. Left out: the store's caches (a compile's call journal, judge verdicts by prompt), which no
report reads.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from promptopt import __version__
from promptopt.errors import UserError

FORMAT = "promptopt-bundle"
FORMAT_VERSION = 1
STAMP = (1980, 1, 1, 0, 0, 0)
PROGRAM_ENTRY = re.compile(r"programs/(?!\.\.?/)[^/\\\x00]+/(manifest\.json|program\.json|corpus\.jsonl)")
# every name a bundle may hold: anything else (a path that climbs out, an absolute one) is refused
ENTRY = re.compile(r"manifest\.json|report\.(json|md|tex)|tables/[a-z_]+\.jsonl|figures/[a-z_]+\.svg|" + PROGRAM_ENTRY.pattern)
MAX_ENTRY_BYTES = 8 << 30  # an entry claiming more is not one promptopt wrote (a zip bomb)
REPRODUCED = "reproduced.json"  # marks a folder `reproduce` made, so it may rebuild it


# ---------------------------------------------------------------------------------------- export


def export(source: str | Path, to: str | Path, run_id: str | None = None, *, b: int = 10_000, seed: int = 0,
           tasks_dirs: list[Path] | None = None) -> Path:  # fmt: skip
    """Write the bundle of a run folder or storage URL (every run in it, or `run_id`'s) to `to`;
    `tasks_dirs`: where user tasks the runs named by name are found."""
    from promptopt import reports
    from promptopt.manifest import versions

    to = Path(to)
    if to.suffix.lower() != ".zip":
        raise UserError(f"A bundle is a .zip file; give --to a name ending in .zip, not {to.name!r}.")
    built = reports.report(str(source), b=b, seed=seed, run_id=run_id)  # also refuses an unknown run
    store, found = reports.open_source(str(source))
    known = store.runs()
    ids = sorted({run_id or found} if (run_id or found) else set(known.run_id))
    rows = store.dump(ids)
    entries: dict[str, bytes] = {
        f"tables/{name}.jsonl": "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in table).encode()
        for name, table in sorted(rows.items())
    }
    entries["report.json"] = built.to_json().encode()
    entries.update(_figures(built))
    folder = Path(source)
    if folder.is_dir() and (folder / "programs").is_dir():
        for path in sorted((folder / "programs").rglob("*")):
            name = path.relative_to(folder).as_posix()
            if path.is_file() and PROGRAM_ENTRY.fullmatch(name):
                entries[name] = path.read_bytes()
    status = {r["run_id"]: r["status"] for r in rows.get("run_status", [])}
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "promptopt_version": __version__,
        "versions": versions(),
        "runs": [{"run_id": r.run_id, "version": r.version, "created_at": r.created_at, "status": status.get(r.run_id),
                  "plan": json.loads(r.plan)} for r in known.sort_values("run_id").itertuples() if r.run_id in ids],  # fmt: skip
        "models": _models(rows.get("records", []), rows.get("manifests", [])),
        "seeds": {"plans": {r.run_id: json.loads(r.plan).get("seed") for r in known.itertuples() if r.run_id in ids},
                  "report_bootstrap": seed},  # fmt: skip
        "tasks": _tasks(rows.get("records", []), [json.loads(p) for p in known.plan if p], tasks_dirs),
        "report_settings": built.settings.model_dump(mode="json"),
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(entries.items())},
    }
    entries["manifest.json"] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    to.parent.mkdir(parents=True, exist_ok=True)
    tmp = to.with_name(to.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=STAMP)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, entries[name])
    tmp.replace(to)
    return to


def _figures(built) -> dict[str, bytes]:
    """The report's tables as a paper prints them, and its figures, as the bundle holds them."""
    from promptopt.reports import FIGURES, render_report

    out = {"report.md": render_report(built, "md").encode(), "report.tex": render_report(built, "latex").encode()}
    for name, draw in FIGURES.items():
        svg = draw(built, "svg")
        if svg is not None:
            out[f"figures/{name}.svg"] = svg
    return out


def _models(records: list[dict], manifests: list[dict]) -> list[dict]:
    """Each model of the records, as its run manifests describe it (identity alone for a store
    written before manifests existed)."""
    described = {}
    for row in manifests:
        described.update(json.loads(row["manifest"]).get("models", {}))
    return [described.get(i, {"identity": i}) for i in sorted({r["model"] for r in records})]


def _tasks(records: list[dict], plans: list[dict], tasks_dirs: list[Path] | None) -> dict[str, dict]:
    """Each task of the records as this machine has it; a task it cannot load (data not here, an
    imported log's) is listed with why and its records' ids."""
    from promptopt.manifest import task_entry

    out = {}
    for name in sorted({r["task"] for r in records}):
        try:
            out[name] = task_entry(load_named(name, plans, tasks_dirs))
        except (UserError, OSError, ValueError) as exc:
            ids = {s: sorted({r["example_id"] for r in records if r["task"] == name and r["split"] == s})
                   for s in ("train", "val", "test")}  # fmt: skip
            out[name] = {"missing": str(exc), "splits": ids}
    return out


def load_named(name: str, plans: list[dict], tasks_dirs: list[Path] | None):
    """The task a run's records name: by name (bundled, or in `tasks_dirs`), else from the YAML
    path a plan gave for it when that file is still there."""
    from promptopt.tasks import load_task

    try:
        return load_task(name, tasks_dirs)
    except UserError as exc:
        if not str(exc).startswith("Unknown task"):
            raise
    stem = name.split(":")[0].split("~")[0]
    for entry in sorted({str(t) for plan in plans for t in plan.get("tasks") or []}):
        if entry.endswith((".yaml", ".yml")) and Path(entry).stem == stem and Path(entry).is_file():
            return load_task(entry + name[len(stem):] if name != stem else entry, tasks_dirs)
    raise UserError(f"task {name} is not found here; give the folder of its YAML with --tasks-dir")


# ---------------------------------------------------------------------------------------- reading


@dataclass
class Bundle:
    path: Path
    manifest: dict
    entries: dict[str, bytes] = field(repr=False)

    def table(self, name: str) -> list[dict]:
        data = self.entries.get(f"tables/{name}.jsonl", b"")
        return [json.loads(line) for line in data.decode().splitlines() if line]

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.entries["manifest.json"]).hexdigest()


def open_bundle(path: str | Path) -> Bundle:
    """A bundle read and checked: a zip with this format's manifest, no newer format, and every
    entry matching its digest (a changed or missing entry is named)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} is not a file; give a bundle made by `promptopt export ... --to FILE.zip`.")
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path} is not a promptopt bundle (not a zip file); bundles are made by `promptopt export`.")
    try:
        with zipfile.ZipFile(path) as zf:
            if "manifest.json" not in zf.namelist():
                raise UserError(f"{path} is a zip file but not a promptopt bundle: it has no manifest.json.")
            manifest = json.loads(zf.read("manifest.json"))
            if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
                raise UserError(f"{path} is a zip file but not a promptopt bundle: its manifest.json is not one.")
            made = manifest.get("format_version")
            if not isinstance(made, int) or made > FORMAT_VERSION:
                raise UserError(
                    f"{path} was made by promptopt {manifest.get('promptopt_version')} in bundle format {made}; this "
                    f"promptopt {__version__} reads format {FORMAT_VERSION}: upgrade promptopt to reproduce it."
                )
            files = manifest.get("files")
            if not isinstance(files, dict) or "report.json" not in files:
                raise UserError(f"{path} is a zip file but not a promptopt bundle: its manifest lists no report.")
            entries = {"manifest.json": zf.read("manifest.json")}
            for info in zf.infolist():
                if not ENTRY.fullmatch(info.filename) or info.file_size > MAX_ENTRY_BYTES:
                    raise UserError(f"Bundle {path} holds an entry promptopt does not write ({info.filename[:80]!r}); "
                                    "nothing was unpacked.")  # fmt: skip
            for name in sorted(set(zf.namelist()) - {"manifest.json"}):
                if name not in files:
                    raise UserError(f"Bundle {path} was changed after export: {name} is not listed in its manifest.")
            for name, digest in sorted(files.items()):
                if name not in zf.namelist():
                    raise UserError(f"Bundle {path} was changed after export: {name} is missing.")
                data = zf.read(name)
                if hashlib.sha256(data).hexdigest() != digest:
                    raise UserError(f"Bundle {path} was changed after export: {name} does not match its digest.")
                entries[name] = data
    except (zipfile.BadZipFile, ValueError, UnicodeDecodeError, EOFError) as exc:
        raise UserError(f"{path} is a damaged bundle ({type(exc).__name__}); export it again.") from None
    return Bundle(path, manifest, entries)


# ---------------------------------------------------------------------------------------- offline


@dataclass
class Reproduction:
    run_dir: Path
    differences: list[str]  # report JSON, text tables and figures that differ from the bundle's
    tasks: dict[str, str]  # task -> "unchanged", what changed, or why it was not checked


def reproduce(path: str | Path, out: str | Path | None = None, tasks_dirs: list[Path] | None = None) -> Reproduction:
    """Rebuild the store from the bundle, re-derive the report, its tables and figures, and list
    every difference from what the bundle holds; with the task data present, check its digests
    and split ids too."""
    from promptopt import reports
    from promptopt.store import Store, default_url

    bundle = open_bundle(path)
    run_dir = _fresh_folder(Path(out) if out else Path("results") / "reproduced" / f"{bundle.path.stem}-{bundle.digest[:8]}")
    store = Store(default_url(run_dir))
    for entry in sorted(bundle.entries):
        if entry.startswith("tables/"):
            name = entry.removeprefix("tables/").removesuffix(".jsonl")
            try:
                store.load(name, bundle.table(name))
            except KeyError:
                raise UserError(f"Bundle {bundle.path} holds a table {name!r} this promptopt does not know.") from None
    unpack_programs(bundle, run_dir)
    ids = [r["run_id"] for r in bundle.manifest.get("runs", [])]
    (run_dir / "run.json").write_text(json.dumps({"run_id": ids[0] if len(ids) == 1 else None,
                                                  "storage": default_url(run_dir)}, indent=2))  # fmt: skip
    settings = bundle.manifest.get("report_settings", {})
    margin = settings.get("equivalence_margin")
    built = reports.report(str(run_dir), b=settings.get("bootstrap_resamples", 10_000), seed=settings.get("seed", 0),
                           local_usd_per_mtok=settings.get("local_usd_per_mtok", 0.0),
                           local_usd_per_hour=settings.get("local_usd_per_hour", 0.0), equivalence_margin=margin,
                           pareto_cost=settings.get("pareto_cost", "inference"), alpha=settings.get("alpha", 0.05))  # fmt: skip
    differences = json_differences(json.loads(bundle.entries["report.json"]), built.model_dump(mode="json"))
    if not differences:  # the same numbers must also render the same tables and figures
        again = _figures(built)
        held = {n for n in bundle.entries if n.startswith(("figures/", "report.")) and n != "report.json"}
        differences = [f"{name} differs" for name in sorted(set(again) | held) if again.get(name) != bundle.entries.get(name)]
    return Reproduction(run_dir, differences, check_tasks(bundle, tasks_dirs))


def unpack_programs(bundle: Bundle, root: Path) -> None:
    """The bundle's saved programs written under `root`, each path checked to stay inside it."""
    top = root.resolve()
    for entry, data in bundle.entries.items():
        if entry.startswith("programs/"):
            target = (root / entry).resolve()
            if not target.is_relative_to(top):
                raise UserError(f"Bundle {bundle.path} holds an entry that points outside its folder ({entry[:80]!r}).")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)


def _fresh_folder(folder: Path) -> Path:
    """The folder a reproduction writes: new, empty, or one an earlier reproduction made (rebuilt,
    keeping its `rerun` folder so a rerun resumes without asking again)."""
    if folder.exists() and any(folder.iterdir()):
        if not (folder / REPRODUCED).exists():
            raise UserError(f"{folder} already holds files not made by `promptopt reproduce`; give another --out.")
        for child in folder.iterdir():
            if child.name != "rerun":
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / REPRODUCED).write_text(json.dumps({"promptopt_version": __version__}) + "\n")
    return folder


def json_differences(want, got, where: str = "report", limit: int = 50) -> list[str]:
    """Each place two JSON values differ, as 'path: bundle X, now Y' (at most `limit`)."""
    out: list[str] = []

    def walk(a, b, at: str) -> None:
        if len(out) >= limit:
            return
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                if key not in b or key not in a:
                    out.append(f"{at}.{key}: {'missing now' if key not in b else 'not in the bundle'}")
                else:
                    walk(a[key], b[key], f"{at}.{key}")
        elif isinstance(a, list) and isinstance(b, list):
            if len(a) != len(b):
                out.append(f"{at}: {len(a)} rows in the bundle, {len(b)} now")
            for i, (x, y) in enumerate(zip(a, b, strict=False)):
                walk(x, y, f"{at}[{i}]")
        elif a != b:
            out.append(f"{at}: bundle {json.dumps(a)[:80]}, now {json.dumps(b)[:80]}")

    walk(want, got, where)
    return out


def check_tasks(bundle: Bundle, tasks_dirs: list[Path] | None = None) -> dict[str, str]:
    """Per task of the bundle: whether this machine's copy has the same files and split ids."""
    from promptopt.manifest import task_entry

    plans = [r["plan"] for r in bundle.manifest.get("runs", [])]
    out = {}
    for name, was in sorted(bundle.manifest.get("tasks", {}).items()):
        if "missing" in was:
            out[name] = f"not checked: the exporter could not read it ({was['missing'][:160]})"
            continue
        try:
            now = task_entry(load_named(name, plans, tasks_dirs))
        except (UserError, OSError, ValueError) as exc:
            out[name] = f"not checked: {str(exc)[:200]}"
            continue
        changed = [f"{f} {'differs' if f in now['files'] else 'is missing'}"
                   for f, d in was["files"].items() if now["files"].get(f) != d]  # fmt: skip
        changed += [f"{f} is new" for f in now["files"] if f not in was["files"]]
        for split, ids in was["splits"].items():
            mine = set(now["splits"].get(split, []))
            gone, new = len(set(ids) - mine), len(mine - set(ids))
            if gone or new:
                changed.append(f"its {split} split has {gone} ids fewer and {new} new")
        if not changed and now["digest"] != was["digest"]:
            changed.append("its items' content differs (gold answers or images)")
        out[name] = "unchanged" if not changed else "changed since export: " + "; ".join(changed)
    return out


# ---------------------------------------------------------------------------------------- online


@dataclass
class Drift:
    """One config re-asked: on the `n` items both runs answered, the share of identical answers
    and the paired difference now − then (score points as a share) with its 95% interval."""

    run_id: str
    model: str
    task: str
    config_id: str
    split: str
    asked: int = 0
    n: int = 0
    identical: float | None = None
    diff: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    errors: int = 0
    calls_per_item: float | None = None  # the original records' LM calls per item (the dry run's estimate)
    cost_per_item: float | None = None
    skipped: str | None = None  # why this config was not re-asked


def rerun(path: str | Path, n: int, *, seed: int = 0, out: str | Path, api_base: str | None = None,
          max_calls: int | None = None, max_cost: float | None = None, threads: int | None = None,
          dry_run: bool = False, tasks_dirs: list[Path] | None = None, on_progress=None) -> list[Drift]:  # fmt: skip
    """Re-ask `n` items per config (drawn by `seed` from the items it answered on test, else val)
    of the bundle's models, through the pipeline (budgets apply; the same command resumes), and
    pair the answers with the bundle's records. `api_base` replaces the bundle's endpoint."""
    import pandas as pd

    bundle = open_bundle(path)
    records = pd.DataFrame(bundle.table("records"))
    if records.empty:
        raise UserError(f"Bundle {bundle.path} holds no records to re-ask.")
    plans = {r["run_id"]: r["plan"] for r in bundle.manifest.get("runs", [])}
    drifts, work = _draw(records, n, seed)
    if dry_run:
        return drifts
    out = Path(out)
    unpack_programs(bundle, out / "bundle")  # saved programs, where _program finds them
    key = hashlib.sha1(json.dumps([bundle.digest, n, seed, api_base]).encode()).hexdigest()[:10]
    budget = None
    for i, (run_id, identity) in enumerate(sorted({(d.run_id, d.model) for d in drifts if not d.skipped})):
        mine = [d for d in drifts if (d.run_id, d.model) == (run_id, identity) and not d.skipped]
        budget = _rerun_group(bundle, plans.get(run_id, {}), identity, mine, work, out=out,
                              run_id=f"rerun-{key}-{i}", api_base=api_base, budget=budget, max_calls=max_calls,
                              max_cost=max_cost, threads=threads, tasks_dirs=tasks_dirs, on_progress=on_progress)  # fmt: skip
    return drifts


def _draw(records, n: int, seed: int):
    """Per config, the split it is re-asked on and the items drawn (answered ones only)."""
    import random

    drifts, work = [], {}
    for (run_id, model, task, config_id), g in records.groupby(["run_id", "model", "task", "config_id"], sort=True):
        split = "test" if (g.split == "test").any() else "val" if (g.split == "val").any() else None
        if split is None:
            continue
        part = g[(g.split == split)]
        answered = sorted(part[part.error.isna()].example_id)
        picked = sorted(random.Random(f"{seed}|{run_id}|{model}|{task}|{config_id}").sample(answered, min(n, len(answered))))
        d = Drift(run_id, model, task, config_id, split, asked=len(picked),
                  calls_per_item=float(part.lm_calls.mean()), cost_per_item=float(part.cost_usd.mean()))  # fmt: skip
        if not picked:
            d.skipped = "it answered no item"
        drifts.append(d)
        work[(run_id, model, task, config_id)] = (json.loads(g.config.iloc[0]), picked, part.set_index("example_id"))
    return drifts, work


def _model_of(identity: str, api_base: str | None):
    """The model a record's identity names, at `api_base` when given, else at the identity's endpoint."""
    from promptopt.models import check_credentials, resolve_model

    name, _, endpoint = identity.partition("@")
    name = name.split("#", 1)[0]
    model = resolve_model(name, api_base or endpoint or None)
    check_credentials(model)
    return model


def _rerun_group(bundle: Bundle, plan: dict, identity: str, drifts: list[Drift], work: dict, *, out: Path, run_id: str,
                 api_base, budget, max_calls, max_cost, threads, tasks_dirs, on_progress):  # fmt: skip
    """One source run's configs of one model re-asked in one rerun run; returns the shared budget."""
    import dataclasses

    from promptopt.config import Config
    from promptopt.pipeline import RunContext
    from promptopt.runplan import RunPlan
    from promptopt.store import default_url
    model = _model_of(identity, api_base)
    tasks = {}
    for d in drifts:
        if d.task not in tasks:
            try:
                tasks[d.task] = load_named(d.task, [plan], tasks_dirs)
            except UserError as exc:
                raise UserError(f"--rerun needs the items of {exc}.") from None
    rplan = RunPlan(models=[model.name], api_base=model.api_base, tasks=sorted(tasks), splits=(drifts[0].split,),
                    out=out, threads=threads, max_calls=max_calls, max_cost=max_cost, references=False,
                    judge_models=plan.get("judges") or [], judge_api_base=api_base or plan.get("judge_api_base"),
                    tasks_dirs=tasks_dirs or [])  # fmt: skip
    ctx = RunContext.open(rplan, on_progress, run_dir=out, run_id=run_id, url=default_url(out),
                          described={"rerun_of": bundle.digest, "run": run_id, "model": identity})  # fmt: skip
    if budget is not None:
        ctx = dataclasses.replace(ctx, budget=budget)
    configs = {d.config_id: Config(**work[(d.run_id, d.model, d.task, d.config_id)][0]) for d in drifts}
    with ctx.noted(), ctx.models([model], list(tasks.values()), list(configs.values())) as each:
        for benches in each:
            for d in drifts:
                bench, cfg = benches[d.task], configs[d.config_id]
                program = _program(bench, cfg, d, bundle)
                if program is None:
                    continue
                _, picked, _ = work[(d.run_id, d.model, d.task, d.config_id)]
                chosen = set(picked)
                bench.score(program, cfg, d.split, [ex for ex in bench.task.examples(d.split) if ex.id in chosen])
    now = ctx.store.records(run_id)
    for d in drifts:
        if not d.skipped:
            _pair(d, now[(now.task == d.task) & (now.config_id == d.config_id) & (now.split == d.split)],
                  work[(d.run_id, d.model, d.task, d.config_id)][2])  # fmt: skip
    return ctx.budget


def _program(bench, cfg, d: Drift, bundle: Bundle):
    """The config's program: its saved folder from the bundle, or (not compiled, nothing to
    prepare) built again from its strategy; None (and why, on `d`) when neither can be had."""
    from promptopt import compiled
    from promptopt.pipeline import program_dir

    folder = program_dir(bench.ctx.run_dir / "bundle", bench.model, bench.task, cfg)
    if (folder / "program.json").exists():
        try:
            return compiled.load(folder, model=bench.model.name, api_base=bench.model.api_base).module
        except UserError as exc:
            d.skipped = f"its saved program cannot be loaded here ({exc})"
            return None
    program = bench.ctx.plan.catalog.strategy(cfg.strategy).build(bench.task, **cfg.knobs)
    if cfg.optimizer != "none" or hasattr(program, "fit_pool") or hasattr(program, "use_corpus"):
        d.skipped = "its compiled or prepared program is not in the bundle (export a run folder to include it)"
        return None
    return program


def _pair(d: Drift, now, then) -> None:
    import numpy as np

    from promptopt.stats import MIN_PAIRED, paired_bootstrap

    now = now.set_index("example_id")
    d.errors = int(now.error.notna().sum())
    ok = now[now.error.isna()]
    common = sorted(set(ok.index) & set(then[then.error.isna()].index))
    d.n = len(common)
    if not common:
        return
    new, old = ok.loc[common], then.loc[common]
    same = [a == b or (a is None and b is None) for a, b in zip(_texts(new.prediction), _texts(old.prediction), strict=True)]
    d.identical = float(np.mean(same))
    diff, low, high = paired_bootstrap(new.score.to_numpy(float), old.score.to_numpy(float))
    d.diff = diff
    if len(common) >= MIN_PAIRED:
        d.ci_low, d.ci_high = low, high


def _texts(values) -> list[str | None]:
    return [None if v is None or v != v else str(v) for v in values]  # NaN: no answer parsed

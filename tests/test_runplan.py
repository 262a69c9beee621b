"""The run plan (grids.runplan) without Snakemake, and against a real Snakemake dry run's job list."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest
import yaml

from grids import runplan
from grids.config import validate_config
from grids.grouping.names import mix_all_group, upper_bound_groups
from grids.runplan import Needs, RunPlan

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
TINY = yaml.safe_load((ROOT / ".test" / "config" / "config.yaml").read_text())


def project(tmp_path: Path, which: str) -> Path:
    """A working directory with the default or the tiny config and the files they name."""
    workdir = tmp_path / which
    (workdir / "config").mkdir(parents=True)
    if which == "default":
        shutil.copy(ROOT / "config" / "config.yaml", workdir / "config" / "config.yaml")
        shutil.copytree(ROOT / "examples", workdir / "examples")  # the unseen haze
    else:
        shutil.copy(ROOT / ".test" / "config" / "config.yaml", workdir / "config" / "config.yaml")
        shutil.copy(ROOT / "examples" / "haze.py", workdir / "haze.py")
    return workdir


def plan_of(workdir: Path) -> RunPlan:
    config = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tiny config's test photo shared with the references
        return RunPlan.from_config(validate_config(config, base_dir=workdir))


def dry_run_jobs(workdir: Path, target: str) -> dict[str, set[str]]:
    """rule -> the wildcards of each of its jobs in `snakemake -n TARGET`."""
    command = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "workflow" / "Snakefile")]
    result = subprocess.run([*command, "-d", str(workdir), "-n", target], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    jobs: dict[str, set[str]] = {}
    for block in re.split(r"\n(?:rule|checkpoint) ", "\n" + result.stdout)[1:]:
        wildcards = re.search(r"wildcards: (.*)", block)
        jobs.setdefault(block.split(":", 1)[0], set()).add(wildcards.group(1) if wildcards else "")
    return jobs


def values(jobs: dict[str, set[str]], rule: str, key: str) -> set[str]:
    """The values of wildcard ``key`` over a rule's jobs."""
    return {dict(w.split("=") for w in one.split(", "))[key] for one in jobs.get(rule, set())}


def runs(jobs: dict[str, set[str]], rule: str) -> set[str]:
    """The replicate runs ("GROUP/seedK") of a rule's jobs."""
    wildcards = (dict(w.split("=") for w in one.split(", ")) for one in jobs.get(rule, set()))
    return {f"{w['group']}/seed{w['k']}" for w in wildcards}


@pytest.mark.parametrize("which", ["default", "tiny"])
@pytest.mark.slow  # Snakemake dry runs of the default and tiny configs
def test_the_plan_names_the_dry_runs_trainings_evaluations_and_fits(tmp_path, which):
    """Per target, what the run plan says it needs is what Snakemake schedules before the search."""
    workdir = project(tmp_path, which)
    plan = plan_of(workdir)
    for target in ("all", *runplan.TARGETS):
        jobs, needs = dry_run_jobs(workdir, target), plan.needs(target)
        assert values(jobs, "train", "group") == set(needs.groups), target
        assert values(jobs, "evaluate", "group") == set(needs.groups), target
        assert values(jobs, "evaluate_baseline", "baseline") == set(needs.baselines), target
        trained = values(jobs, "train_baseline", "trained") | values(jobs, "import_baseline", "published")
        assert trained == set(needs.baselines), target
        assert runs(jobs, "train_replicate") == runs(jobs, "evaluate_replicate") == set(needs.replicates), target
        assert values(jobs, "test_clean_images", "test_set") == set(needs.test_sets), target
        assert values(jobs, "test_degrade", "degradation") == set(needs.test_degradations), target
        assert values(jobs, "validation_ggd", "variant") == set(needs.variants), target
    # The configs differ where it matters: baselines and an unseen degradation in the tiny one.
    all_needs = plan.needs("all")
    assert bool(all_needs.baselines) == (which == "tiny")
    # the clean test images: the case "nothing to restore"
    assert set(all_needs.test_degradations) == set(plan.degradations) | set(plan.unseen) | {"clean"}


def test_mix_all_only_with_more_than_one_degradation():
    assert mix_all_group(["sr", "jpeg"]) == "jpeg+sr"
    assert mix_all_group(["jpeg"]) is None and mix_all_group(["jpeg", "jpeg"]) is None
    assert upper_bound_groups(["sr", "jpeg"]) == ["sr", "jpeg", "jpeg+sr"]
    assert upper_bound_groups(["jpeg"]) == ["jpeg"]
    one = copy.deepcopy(TINY)
    one["degradations"] = {"jpeg": one["degradations"]["jpeg"]}
    one["validation"]["experiments"] = None
    one_plan = RunPlan.from_config(validate_config(one, base_dir=ROOT / ".test"))
    assert one_plan.mix_all is None and one_plan.upper_bound_groups == ["jpeg"]
    assert one_plan.needs("upper_bounds").groups == ("jpeg",) and one_plan.validation_groups == []


@pytest.fixture(scope="module")
def tiny() -> RunPlan:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return RunPlan.from_config(validate_config(TINY, base_dir=ROOT / ".test"))


def test_groups_evaluations_and_variants(tiny):
    assert tiny.degradations == ["jpeg", "gaussian_noise", "sr", "haze"]
    # the clean test images are a case of their own (the identity's), last
    assert tiny.test_degradations == [*tiny.degradations, "salt_pepper", "clean"]
    assert tiny.image_sets == ["clean", *tiny.degradations]
    assert tiny.reference_sets == [*tiny.degradations, "clean"]  # the identity's references: the clean set
    # t1's groups; e2 names degradations the tiny config lacks and is skipped
    assert tiny.experiment_groups == ["jpeg+sr", "gaussian_noise+haze"]
    assert tiny.validation_groups == ["gaussian_noise+haze", "gaussian_noise+haze+jpeg+sr", "jpeg+sr"]
    assert tiny.eval_degradations(group="jpeg+sr") == ["jpeg", "sr"]
    assert tiny.eval_degradations(others="jpeg+sr") == ["gaussian_noise", "haze", "salt_pepper", "clean"]
    assert tiny.eval_degradations() == tiny.test_degradations  # a baseline: every test degradation
    assert tiny.variant_features("method") == tiny.config["features"]
    assert tiny.variant_features("rb16") == {**tiny.config["features"], "kind": "descriptor", "layer": "RB16"}
    assert tiny.variant_features("sift")["kind"] == "sift"
    assert [tiny.variant_descriptor(v) for v in ("method", "rb16", "untrained", "sift")] == [
        "configured",
        "configured",
        "untrained",
        None,
    ]
    assert tiny.fit_variants == ["rb16", "untrained", "sift"]
    assert tiny.replicate_runs == ["jpeg/seed1"]
    assert tiny.validation_test_set() == "heldout"
    assert tiny.function_files(["haze", "jpeg"]) == ["haze.py"]
    with pytest.raises(ValueError, match="unknown target 'everything'"):
        tiny.needs("everything")


def test_priorities_put_the_search_first(tiny):
    assert tiny.priority("jpeg") == tiny.priority("gaussian_noise+haze+jpeg+sr") == 1  # single-task, mix-all
    assert tiny.priority("jpeg+sr") == tiny.priority("gaussian_noise+haze") == 0  # only Table 2 needs them
    assert tiny.priority("gaussian_noise+sr") == 1  # a group only the search verifies
    assert tiny.priority(None) == 0  # a baseline
    assert tiny.config["grouping"]["decision"] == "conservative" and tiny.priority(noise_floor=True) == 1
    point = copy.deepcopy(TINY)
    point["grouping"]["decision"] = "point"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert RunPlan.from_config(validate_config(point, base_dir=ROOT / ".test")).priority(noise_floor=True) == 0


def test_what_the_rules_pass_on_is_decided_by_the_plan(tiny):
    """The decisions common.smk used to take: the baselines' group, the config hash, the
    architectures a model file may name, the selector's settings, the descriptor and the noise floor."""
    import hashlib
    import json

    assert tiny.baseline_group == tiny.mix_all == "gaussian_noise+haze+jpeg+sr"
    assert tiny.config_hash == hashlib.sha256(json.dumps(tiny.config, sort_keys=True).encode()).hexdigest()
    assert tiny.config_archs == sorted({tiny.config["training"]["arch"], "rrdbnet"})
    assert set(tiny.selector_settings) == set(tiny.config["selection"]) - {"unseen", "router_steps"}
    assert tiny.reads_descriptor and tiny.search_waits_for_noise_floor and not tiny.trains_descriptor
    assert tiny.replicate_seed(2) == tiny.config["training_seed"] + 2
    changed = copy.deepcopy(TINY)
    changed["degradations"] = {"jpeg": changed["degradations"]["jpeg"]}
    changed["validation"]["experiments"] = None
    changed["grouping"]["decision"] = "point"
    changed["features"] = {**changed["features"], "kind": "sift"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one = RunPlan.from_config(validate_config(changed, base_dir=ROOT / ".test"))
    assert one.mix_all is None and one.baseline_group == "jpeg"  # one degradation: its own name
    assert not one.reads_descriptor and not one.search_waits_for_noise_floor


@pytest.mark.parametrize(
    ("most", "cores", "threads"),
    [(4, 2, 1), (4, 1, 1), (4, 16, 4), (8, 6, 3), (4, None, 4), (4, sys.maxsize, 4)],
)
def test_side_by_side_threads(most, cores, threads):
    assert runplan.side_by_side_threads(most, cores) == threads


def round_table(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["group", "action", "partition"])


def test_reading_the_round_tables():
    tables = {
        0: round_table([("a+b", "verify", 0), ("c+d", "verify", 0)]),
        1: round_table([("a+b+c", "verify", 0)]),
        2: round_table([("a+b", "final", 0), ("c", "final", 0), ("d", "final", 0), ("a+b+c", "final", 1)]),
    }
    read = tables.__getitem__
    assert runplan.requested_groups(read, 0) == []
    assert runplan.requested_groups(read, 2) == ["a+b", "c+d", "a+b+c"]
    r, table = runplan.final_round(read)
    assert r == 2 and table is tables[2]
    assert runplan.final_groups(read) == ["a+b", "c", "d"]  # the chosen partition (0) only


def test_what_the_search_adds(tiny):
    final = ["jpeg+sr", "gaussian_noise", "haze"]
    assert tiny.table1_groups(final) == sorted({*final, *tiny.degradations, "gaussian_noise+haze+jpeg+sr"})
    assert tiny.scored_groups(final) == sorted({*final, *tiny.degradations})


@pytest.mark.parametrize(
    ("unseen", "final", "expected"),
    [
        # one final group of every degradation: the clean case is still left to score
        ({}, ["gaussian_noise+jpeg+sr"], ["gaussian_noise+jpeg+sr"]),
        ({}, ["jpeg+sr", "gaussian_noise"], ["jpeg+sr", "gaussian_noise"]),
        ({"haze": {"function": "examples/haze.py:haze"}}, ["gaussian_noise+jpeg+sr"], ["gaussian_noise+jpeg+sr"]),
    ],
)
def test_evaluate_others_only_where_a_test_degradation_is_left(unseen, final, expected):
    """`snakemake selection_report` asked evaluate_others for a group covering every test degradation,
    and the job died on argparse's `--degradations: expected at least one argument`."""
    config = {**copy.deepcopy(DEFAULT), "selection": {"unseen": unseen}}
    config["degradations"] = {name: DEFAULT["degradations"][name] for name in ("gaussian_noise", "jpeg", "sr")}
    config["validation"] = {"experiments": None}
    plan = RunPlan.from_config(validate_config(config, base_dir=ROOT))
    assert plan.others_evals(final) == [f"results/eval/others/{group}.parquet" for group in expected]
    assert all(plan.eval_degradations(others=group) for group in expected)
    mix_all = "gaussian_noise+jpeg+sr"  # its members' table, and the others' (the clean case, unseen ones)
    assert plan.mix_all_evals() == [f"results/eval/{mix_all}.parquet", f"results/eval/others/{mix_all}.parquet"]


def test_needs_union():
    a = Needs(groups=("b", "a"), variants=("sift",))
    b = Needs(groups=("a", "c"), test_sets=("t",))
    assert a | b == Needs(groups=("a", "b", "c"), test_sets=("t",), variants=("sift",))


def test_the_run_plan_imports_neither_torch_nor_snakemake():
    code = "import sys, grids.runplan; print(sorted(m for m in ('torch', 'snakemake') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr


def test_test_manifests_and_their_arguments(tiny):
    sets, names = tiny.test_sets, tiny.test_degradations
    paths = tiny.test_manifests()
    assert len(paths) == len(sets) * (1 + len(names))
    assert paths[0] == f"results/test/{sets[0]}/clean/manifest.parquet"
    assert paths[1] == f"results/test/{sets[0]}/degraded/{names[0]}/manifest.parquet"
    only = tiny.test_manifests(["jpeg"])
    assert only == [
        p
        for s in sets
        for p in (f"results/test/{s}/clean/manifest.parquet", f"results/test/{s}/degraded/jpeg/manifest.parquet")
    ]
    moved = [f"P/{p}" for p in only]  # as a module's prefix passes them
    words = tiny.test_set_args(moved)
    assert words == [w for k, s in enumerate(sets) for w in ("--test-set", s, *moved[2 * k : 2 * k + 2])]


@pytest.mark.parametrize(
    "roots, path, outside",
    [
        (("results/", "logs/"), "results/a.parquet", False),
        (("results/", "logs/"), "results/../victim", True),
        (("results/", "logs/"), "resultsx/a", True),
        (("results/",), "/abs/results/a", True),
        (("/p/results/",), "/p/results/a", False),  # an absolute module prefix
        (("/p/results/",), "/p/results/../../x", True),
    ],
)
def test_outside_the_output_roots(roots, path, outside):
    assert runplan.outside(roots, [path]) == ([path] if outside else [])


def test_a_composite_unseen_degradation_gets_its_parts_trained_entries():
    config = copy.deepcopy(TINY)
    trained = list(config["degradations"])[:2]
    config["selection"]["unseen"]["mixed"] = {"compose": trained}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = RunPlan.from_config(validate_config(config, base_dir=ROOT / ".test"))
    assert "mixed" in plan.test_degradations and "mixed" not in plan.degradations
    parts = plan.entries(["mixed"])["mixed"]["compose"]
    assert [part["name"] for part in parts] == trained
    assert [part["entry"] for part in parts] == [plan.config["degradations"][name] for name in trained]

"""The workflow through `--profile slurm` on a real Slurm cluster (a single node on localhost).

Skipped unless a Slurm controller answers and has the test cluster's partition: start one with
`sudo bash scripts/slurm_cluster.sh start` (.ci/run does). The repository's profile `slurm/` is
used as it is, with a test-only second profile on top that only sets the partition, shrinks the
memory requests (so that jobs run side by side on the one node) and polls faster.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_workflow import TINY, make_project

pytestmark = pytest.mark.slow  # runs the workflow through a real Slurm: minutes

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = ROOT / "workflow" / "Snakefile"
PROFILE = ROOT / "slurm" / "config.yaml"
PARTITION = "debug"  # the partition of scripts/slurm_cluster.sh

# Two degradations (one user-defined, so a function file travels with the jobs): every stage runs,
# with few jobs, since each Slurm job costs a scheduler cycle and two Snakemake starts.
SLURM_TINY = {**TINY, "degradations": {name: TINY["degradations"][name] for name in ("jpeg", "haze")}}


def _cluster_problem() -> str | None:
    """Why the Slurm test cannot run here, or None."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "no Slurm client (sinfo, sbatch) here; start a test cluster with scripts/slurm_cluster.sh start"
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
        nodes = subprocess.run(
            ["sinfo", "-h", "-p", PARTITION, "-o", "%t %G"], capture_output=True, text=True, timeout=30
        )
    except subprocess.TimeoutExpired:
        return "the Slurm controller does not answer (timeout)"
    if "is UP" not in ping.stdout:
        return "no Slurm controller is up; start a test cluster with scripts/slurm_cluster.sh start"
    states = nodes.stdout.split()
    if nodes.returncode != 0 or not any(s.startswith(("idle", "mix", "alloc")) for s in states[::2]):
        return f"Slurm has no usable node in partition {PARTITION!r} (scripts/slurm_cluster.sh start makes one)"
    if "gpu" not in nodes.stdout:
        return f"partition {PARTITION!r} has no gpu GRES (scripts/slurm_cluster.sh start declares one)"
    return None


_PROBLEM = _cluster_problem()


@pytest.fixture(scope="module", autouse=True)
def _slurm_cluster():
    """Skip without a cluster; fail instead where the caller started one (.ci/run sets GRIDS_REQUIRE_SLURM=1)."""
    if _PROBLEM is not None:
        if os.environ.get("GRIDS_REQUIRE_SLURM") == "1":
            pytest.fail(f"GRIDS_REQUIRE_SLURM=1 but {_PROBLEM}")
        pytest.skip(f"Slurm test skipped: {_PROBLEM}")


def gpu_rules() -> set[str]:
    """The rules for which the profile asks a GPU."""
    profile = yaml.safe_load(PROFILE.read_text())
    rules = profile["set-resources"]
    return {rule for rule, res in rules.items() if res.get("gpu") or "gpu" in str(res.get("gres", ""))}


def write_test_profile(path: Path) -> Path:
    """A second profile applied over `slurm/`: the test partition, small memory, fast polling.

    `default-resources` and `set-resources` replace the whole mapping of the profile before, so
    they are copied from slurm/config.yaml with only the memory and partition changed: runtimes,
    GPU requests and slurm_extra are the profile's own.
    """
    profile = yaml.safe_load(PROFILE.read_text())
    small = 300  # MB: every job fits the node many times over
    default = {**profile["default-resources"], "slurm_partition": PARTITION, "mem_mb": small}
    per_rule = {rule: {**res, "mem_mb": small} if "mem_mb" in res else res
                for rule, res in profile["set-resources"].items()}  # fmt: skip
    override = {
        "default-resources": default,
        "set-resources": per_rule,
        # The plugin sleeps `seconds-between-status-checks` (+10 s per idle round) and, after a
        # job finishes, `slurm-init-seconds-before-status-checks`: short, for seconds-long jobs.
        "seconds-between-status-checks": 2,
        "slurm-init-seconds-before-status-checks": 3,
        "slurm-keep-successful-logs": True,
        "latency-wait": 5,
    }
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.yaml").write_text(yaml.safe_dump(override, sort_keys=False))
    return path


def snakemake_slurm(workdir: Path, profile: Path, *args: str, limit: int) -> subprocess.CompletedProcess:
    """Snakemake with `--profile slurm` resolved from the repository root, as a user runs it."""
    command = [
        "timeout", "-s", "INT", "-k", "30", str(limit),  # on SIGINT Snakemake cancels its Slurm jobs
        sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(workdir),
        "--profile", "slurm", "--profile", str(profile), *args,
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode != 124, f"snakemake ran past {limit}s:\n{result.stdout}{result.stderr}"
    return result


def ran_remotely(log: str) -> Counter:
    """Rule names of the jobs Snakemake ran as cluster jobs (`rule X:`), not locally (`localrule X:`)."""
    return Counter(m.group(2) for m in re.finditer(r"^(rule|checkpoint) (\w+):$", log, re.MULTILINE))


def slurm_jobs(log: str) -> list[dict]:
    """Every Slurm job of the run that wrote `log`, as the Slurm controller records it."""
    run_ids = re.findall(r"SLURM run ID: (\S+)", log)
    assert len(run_ids) == 1, log
    listing = subprocess.run(
        ["squeue", "--states=all", "--array", "--noheader", "--name", run_ids[0], "--format=%i|%T|%k"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    jobs = []
    for line in listing.stdout.splitlines():
        job_id, state, comment = line.strip().split("|", 2)  # an array's task: "{array id}_{task}"
        show = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, timeout=60)
        rule = re.match(r"rule_(\w+?)(_wildcards_|$)", comment).group(1)
        jobs.append({"id": job_id, "state": state, "rule": rule, "details": show.stdout})
    return jobs


def submitted_jobs(log: str) -> list[str]:
    """The Slurm job ids Snakemake reported: one per job, or one per task of a job array."""
    single = re.findall(r"has been submitted with SLURM jobid (\d+)", log)
    arrays = re.findall(
        r"Submitted array job with .* SLURM job ID (\d+)\. The individual task IDs are (\d+)-(\d+)", log
    )
    tasks = [f"{array}_{task}" for array, first, last in arrays for task in range(int(first), int(last) + 1)]
    return single + tasks


def check_went_through_slurm(log: str) -> list[dict]:
    """Each job Snakemake did not run locally was one Slurm job, completed, with the right GPU request."""
    jobs = slurm_jobs(log)
    assert sorted(submitted_jobs(log)) == sorted(job["id"] for job in jobs), log
    assert Counter(job["rule"] for job in jobs) == ran_remotely(log), log
    assert all(job["state"] == "COMPLETED" for job in jobs), [(j["rule"], j["state"]) for j in jobs]
    for job in jobs:
        assert f"Partition={PARTITION} " in job["details"]
        tres_per_job = re.search(r"TresPerJob=(\S*)", job["details"])  # absent when nothing is asked
        asks_gpu = tres_per_job is not None and "gpu" in tres_per_job.group(1)
        assert asks_gpu == (job["rule"] in gpu_rules()), (job["rule"], job["details"])
    return jobs


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("slurm")
    return make_project(tmp / "project", SLURM_TINY), write_test_profile(tmp / "slurm-test")


def assert_rerun_submits_nothing(workdir: Path, profile: Path, *targets: str) -> None:
    again = snakemake_slurm(workdir, profile, *targets, limit=120)
    log = again.stdout + again.stderr
    assert again.returncode == 0, log
    assert "Nothing to be done" in log and "submitted with SLURM jobid" not in log, log


def run_through_slurm(workdir: Path, profile: Path, target: str, limit: int) -> tuple[str, list[dict]]:
    """Build ``target`` through Slurm: it succeeds, each job Snakemake did not run locally as one
    Slurm job (check_went_through_slurm). Its log and those jobs; prints how long it took."""
    start = time.monotonic()
    result = snakemake_slurm(workdir, profile, target, limit=limit)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    jobs = check_went_through_slurm(log)
    print(f"{target} through Slurm: {len(jobs)} jobs in {time.monotonic() - start:.0f}s")
    return log, jobs


def test_similarity_matrix_through_slurm(project):
    workdir, profile = project
    log, jobs = run_through_slurm(workdir, profile, "similarity_matrix", limit=420)
    assert {"clean_images", "degrade", "ggd_fit"} <= {job["rule"] for job in jobs}
    assert re.search(r"^localrule similarity_tables:", log, re.MULTILINE)  # seconds of work: not a Slurm job
    matrix = pd.read_parquet(workdir / "results" / "similarity" / "matrix.parquet")
    assert len(matrix) == (len(SLURM_TINY["degradations"]) + 1) ** 2
    assert (workdir / "results" / "similarity" / "heatmap.png").stat().st_size > 1000

    assert_rerun_submits_nothing(workdir, profile, "similarity_matrix")


def test_final_models_through_slurm(project):
    workdir, profile = project
    log, jobs = run_through_slurm(workdir, profile, "final_models", limit=600)
    assert {"train", "evaluate"} <= {job["rule"] for job in jobs}
    assert "Submitted array job" in log  # the profile's slurm-array-jobs: the trainings ready together
    assert re.search(r"^localrule ", log, re.MULTILINE), "expected the bookkeeping rules to run locally"
    for path in ("results/final/groups.parquet", "results/grouping/verified.parquet"):
        assert len(pd.read_parquet(workdir / path)) > 0, path
    assert any(p.name.startswith("table1") for p in (workdir / "results" / "final").iterdir())

    assert_rerun_submits_nothing(workdir, profile, "final_models", "similarity_matrix")


def wait_until(what: str, predicate, runner: subprocess.Popen, timeout: float = 180):
    """Poll `predicate` until it returns something truthy; fail if Snakemake ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        assert runner.poll() is None, f"snakemake ended (status {runner.returncode}) while waiting for {what}"
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}")


def running_job(run_id: str, rule: str) -> str | None:
    """The id of the running Slurm job of `rule` in Snakemake run `run_id` (if just one)."""
    out = subprocess.run(
        ["squeue", "-h", "-t", "RUNNING", "--name", run_id, "--format=%i|%k"], capture_output=True, text=True
    ).stdout
    rows = [line.split("|", 1) for line in out.split()]
    ids = [job_id for job_id, comment in rows if re.fullmatch(rf"rule_{rule}(_wildcards_.*)?", comment)]
    return ids[0] if len(ids) == 1 else None


def checkpoint_step(path: Path) -> int:
    from grids.checkpoint import load_checkpoint

    try:
        return int(load_checkpoint(path)["step"])
    except (FileNotFoundError, ValueError):
        return 0


def read_if_present(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def test_preempted_and_timed_out_training_resumes(project, tmp_path):
    """Both ways a cluster stops a training: preemption with requeue (Slurm reruns the same job)
    and the time limit (`--signal=TERM@...` of the profile, then a Snakemake retry). Each time the
    trainer saves on SIGTERM and the next run continues from that step."""
    _, profile = project
    config = {**SLURM_TINY, "training": {**SLURM_TINY["training"], "iterations": 200, "checkpoint_every": 10}}
    workdir = make_project(tmp_path / "preempt", config)
    resume = workdir / "results" / "resume" / "jpeg.pth"
    train_log = workdir / "logs" / "train" / "jpeg.log"
    out_path = workdir / "snakemake.out"
    command = [
        "timeout", "-s", "INT", "-k", "30", "420",
        sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(workdir),
        "--profile", "slurm", "--profile", str(profile), "results/models/jpeg/model.pth",
    ]  # fmt: skip
    with out_path.open("w") as out:
        runner = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True)
    run_id = None
    try:
        run_id = wait_until("the run id", lambda: re.search(r"SLURM run ID: (\S+)", out_path.read_text()), runner)[1]
        # 1. Preemption: Slurm stops the job (SIGTERM to every process) and requeues it under the
        # same id. Slurm delays a requeued job by ~2 min; the test lets it start at once.
        job = wait_until("the train job to run", lambda: running_job(run_id, "train"), runner)
        first = wait_until("a first checkpoint", lambda: checkpoint_step(resume), runner)
        subprocess.run(["scontrol", "requeue", job], check=True, capture_output=True)
        wait_until("the requeue", lambda: "PENDING" in subprocess.run(
            ["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True).stdout, runner)  # fmt: skip
        subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True, capture_output=True)
        wait_until("the requeued job to run again", lambda: running_job(run_id, "train") == job, runner)
        # The job step's Snakemake deletes the old log before the run writes a new one.
        resumed = wait_until("the requeued run to resume", lambda: re.search(
            r"resumed from \S+ at step (\d+)", read_if_present(train_log)), runner)  # fmt: skip
        assert int(resumed[1]) >= first
        saved = wait_until(
            "a checkpoint of the requeued run", lambda: (s := checkpoint_step(resume)) > int(resumed[1]) and s, runner
        )
        assert saved < 200, "the training ended before the test could signal it"

        # 2. Time limit: Slurm signals the job steps (not the batch shell) before killing the job;
        # the trainer saves and exits 143, the job fails and Snakemake submits it again.
        subprocess.run(["scancel", "--signal=TERM", job], check=True, capture_output=True)
        retry = wait_until("the retried train job", lambda: (j := running_job(run_id, "train")) != job and j, runner)
        assert runner.wait(timeout=400) == 0, out_path.read_text()
    finally:
        if runner.poll() is None:
            runner.send_signal(signal.SIGINT)  # Snakemake cancels its Slurm jobs on SIGINT (not on SIGTERM)
            try:
                runner.wait(timeout=60)
            except subprocess.TimeoutExpired:
                runner.kill()
        if run_id:
            subprocess.run(["scancel", "--name", run_id], capture_output=True)
    log = out_path.read_text()
    final_run = train_log.read_text()
    match = re.search(r"resumed from \S+ at step (\d+)", final_run)
    assert match and int(match.group(1)) >= saved, final_run
    assert pd.read_parquet(workdir / "results" / "models" / "jpeg" / "train_log.parquet").step.iloc[-1] == 200
    assert not resume.exists()  # a finished training leaves nothing to resume
    states = {j["id"]: j for j in slurm_jobs(log)}
    assert states[job]["state"] == "FAILED" and "Restarts=1 " in states[job]["details"]
    assert states[retry]["state"] == "COMPLETED" and states[retry]["rule"] == "train"

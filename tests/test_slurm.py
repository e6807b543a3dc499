"""regbench against a real SLURM scheduler: the one-node cluster on localhost that CI starts
(`bash scripts/slurm_local.sh start`, as root). Every test skips, in one line saying how to start
it, where no cluster answers (tests/helpers/slurm.py); none starts it.

The cluster's own checks first (a job runs, sbatch refuses memory the node lacks), then the
`hydra/launcher=slurm` preset (hydra-submitit-launcher) end to end: its sweep's results equal
the basic launcher's, job for job.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.helpers import slurm
from tests.helpers.cli import regbench
from tests.helpers.compare import SAME
from tests.helpers.rundirs import metrics_rows

pytestmark = pytest.mark.slow

# Four jobs, two epochs of digits each; one thread, so that the SLURM job (given cpus_per_task
# cores) and the basic launcher's job compute alike, bit for bit.
SWEEP = ["reg=none,l2", "seed=0,1", "trainer.max_epochs=2", "trainer.num_threads=1"]
N_JOBS = 4


@pytest.fixture(scope="module")
def node() -> slurm.Cluster:
    return slurm.cluster()


def test_a_batch_job_runs_and_writes_its_output(node, tmp_path):
    out = subprocess.run(["sbatch", "--parsable", f"--output={tmp_path}/job_%j.out", "--wrap",
                          "echo ran on $SLURMD_NODENAME as job $SLURM_JOB_ID"],
                         capture_output=True, text=True, timeout=30, check=True)
    job = out.stdout.strip().split(";")[0]
    assert slurm.wait_for(job, timeout=300) == {job: "COMPLETED"}
    assert (tmp_path / f"job_{job}.out").read_text() == f"ran on {node.node} as job {job}\n"


def test_sbatch_refuses_more_memory_than_the_node_has(node):
    """regbench's refusal of resources the cluster lacks rests on this check by sbatch itself."""
    out = subprocess.run(["sbatch", f"--mem={node.memory_mb + 1024}M", "--wrap", "true"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and out.stdout == ""
    assert "sbatch: error: Memory specification can not be satisfied" in out.stderr


def test_sbatch_accepts_the_node_s_memory(node, tmp_path):
    out = subprocess.run(["sbatch", "--parsable", f"--mem={node.memory_mb}M", f"--output={tmp_path}/%j.out",
                          "--wrap", "true"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert set(slurm.wait_for(out.stdout.strip(), timeout=300).values()) == {"COMPLETED"}


@pytest.fixture(scope="module")
def preset_sweep(node, tmp_path_factory):
    """The same four jobs through `hydra/launcher=slurm` and through the basic launcher: the two
    commands' outputs and sweep folders."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher",
                        reason='hydra-submitit-launcher not installed; pip install -e ".[launchers]"')
    tmp = tmp_path_factory.mktemp("preset")  # on this machine's disk, which the node (localhost) sees
    on_slurm = regbench("run", "-m", "hydra/launcher=slurm", *SWEEP, f"hydra.sweep.dir={tmp / 'slurm'}", cwd=tmp)
    basic = regbench("run", "-m", *SWEEP, f"hydra.sweep.dir={tmp / 'basic'}", cwd=tmp)
    return on_slurm, tmp / "slurm", basic, tmp / "basic"


def test_the_slurm_preset_runs_a_sweep_whose_results_equal_the_basic_launcher_s(preset_sweep):
    on_slurm, sweep, basic, basic_sweep = preset_sweep
    assert on_slurm.returncode == 0, on_slurm.stdout[-3000:] + on_slurm.stderr[-3000:]
    assert basic.returncode == 0, basic.stdout[-3000:] + basic.stderr[-3000:]
    assert f"sweep done: {N_JOBS} ok" in on_slurm.stdout
    # one SLURM array: its tasks' logs and results in the sweep folder (submitit_folder)
    tasks = sorted(p.name for p in (sweep / ".submitit").iterdir() if re.fullmatch(r"\d+_\d+", p.name))
    assert len(tasks) == N_JOBS and len({t.split("_")[0] for t in tasks}) == 1, tasks
    array = tasks[0].split("_")[0]
    script = (sweep / ".submitit" / array / f"{array}_submission.sh").read_text()
    # the preset's mem_gb null asks for no memory: the cluster's default, which no node refuses
    assert "#SBATCH --cpus-per-task=2\n" in script and "--mem" not in script, script
    for job in range(N_JOBS):
        ran = json.loads((sweep / str(job) / "result.json").read_text())
        ref = json.loads((basic_sweep / str(job) / "result.json").read_text())
        assert ran["status"] == "ok", ran["error"]
        assert ran["threads"] == ref["threads"] == 1
        assert {k: ran[k] for k in SAME} == {k: ref[k] for k in SAME}, job
        assert metrics_rows(sweep / str(job)) == metrics_rows(basic_sweep / str(job)), job


def test_sacct_noise_does_not_reach_the_user(preset_sweep):
    on_slurm = preset_sweep[0]
    assert on_slurm.returncode == 0, on_slurm.stderr[-3000:]
    shown = on_slurm.stdout + on_slurm.stderr
    assert "sacct" not in shown and "accounting storage is disabled" not in shown, shown[-2000:]


def _too_much_memory(node: slurm.Cluster, tmp_path: Path):
    gb = node.memory_mb // 1024 + 2
    return regbench("run", "-m", "hydra/launcher=slurm", f"hydra.launcher.mem_gb={gb}", "trainer.max_epochs=1",
                    f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)


def test_the_preset_refuses_too_much_memory_in_one_line(node, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="hydra-submitit-launcher not installed")
    out = _too_much_memory(node, tmp_path)
    assert out.returncode == 2
    assert out.stderr.startswith("regbench: error: sbatch refused the submission: sbatch: Memory specification "
                                 "can not be satisfied")
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not list((tmp_path / "sweep").glob("*/result.json"))

"""docs/distributed.md "The scale path": every command in that section, run as written.

The section is read here, so the documentation and what is run cannot drift apart. Each ```console
block is one step; its commands run at the same time (one per "machine" or worker), all on
127.0.0.1: the documented addresses (10.0.0.1, db.example) become 127.0.0.1, the documented ports
free ones, and the database a PostgreSQL server this test starts (tests/postgres_server.py).
"""
from __future__ import annotations

import csv
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from postgres_server import PostgresServer, find_bin, free_port

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "distributed.md"
PROGRAMS = {"nnspec": [sys.executable, "-m", "nnspec.cli"], "torchrun": [sys.executable, "-m", "torch.distributed.run"]}
TRAIN_STEPS, SEARCH_STEPS = 4, 2  # console blocks in the section: keep in step with the doc


def scale_path_blocks() -> list[list[str]]:
    """The commands of each ```console block of the section, without the `$ ` prompt."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("\n## The scale path\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```console\n(.*?)```", section, flags=re.S)
    return [[line[2:] for line in block.splitlines() if line.startswith("$ ")] for block in blocks]


def is_search_step(block: list[str]) -> bool:
    return any(cmd.startswith(("createdb", "nnspec tune")) for cmd in block)


def localize(cmd: str, ports: dict[str, int], pg_port: int | None = None) -> list[str]:
    """The documented command as run on this one machine."""
    cmd = cmd.replace("10.0.0.1", "127.0.0.1")
    for documented, port in ports.items():
        cmd = cmd.replace(f":{documented}", f":{port}").replace(f"--master-port {documented}", f"--master-port {port}")
    if pg_port is not None:
        cmd = (cmd.replace("db.example:5432", f"127.0.0.1:{pg_port}").replace("-h db.example -p 5432",
                                                                                  f"-h 127.0.0.1 -p {pg_port}")
               .replace("//me@", "//nnspec@").replace("-U me ", "-U nnspec "))
    program, *args = shlex.split(cmd)
    if program == "createdb":
        return [str(find_bin() / "createdb"), *args]
    return [*PROGRAMS[program], *args]


def run_together(cmds: list[list[str]], cwd: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    logs = [cwd / f"step-{len(list(cwd.glob('step-*')))}-{i}.log" for i in range(len(cmds))]
    procs = []
    for cmd, log in zip(cmds, logs):
        with open(log, "w") as sink:
            procs.append(subprocess.Popen(cmd, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT, env=env))
    try:
        codes = [p.wait(timeout=400) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert codes == [0] * len(cmds), "\n\n".join(f"$ {shlex.join(c)}\n{log.read_text()}"
                                                   for c, log in zip(cmds, logs))


def workdir(tmp_path: Path) -> Path:
    (tmp_path / "specs").symlink_to(ROOT / "specs")  # the commands name specs/... as from a clone
    return tmp_path


def test_the_section_has_the_steps_this_test_runs():
    blocks = scale_path_blocks()
    assert [is_search_step(b) for b in blocks] == [False] * TRAIN_STEPS + [True] * SEARCH_STEPS
    assert all(cmd.split()[0] in (*PROGRAMS, "createdb") for block in blocks for cmd in block)


@pytest.mark.slow
def test_the_training_steps_run_on_one_two_processes_and_two_simulated_machines(tmp_path):
    cwd = workdir(tmp_path)
    blocks = [b for b in scale_path_blocks() if not is_search_step(b)]
    for block in blocks:
        ports = {"29500": free_port(), "29400": free_port()}
        run_together([localize(cmd, ports) for cmd in block], cwd)
    # every step trained once (only rank 0 writes a run folder), all the spec's epochs
    histories = sorted((cwd / "runs" / "IrisMLP").glob("*/history.csv"))
    assert len(histories) == len(blocks)
    for path in histories:
        with open(path, newline="") as fh:
            assert len(list(csv.DictReader(fh))) == 10  # the documented --epochs 10


@pytest.mark.slow
def test_the_search_step_runs_two_workers_on_one_postgres_study(tmp_path):
    if find_bin() is None:
        pytest.skip("PostgreSQL's server binaries (initdb, pg_ctl) are not installed")
    optuna = pytest.importorskip("optuna")
    pytest.importorskip("psycopg", reason="the `postgres` extra (psycopg) is not installed")
    from nnspec import tune as tune_mod

    cwd = workdir(tmp_path)
    with PostgresServer() as pg:
        for block in [b for b in scale_path_blocks() if is_search_step(b)]:
            run_together([localize(cmd, {}, pg.port) for cmd in block], cwd)
        study = optuna.load_study(study_name="mlp", storage=tune_mod.storage_url(pg.url("studies")))
        trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if tune_mod.counts(t)]
    assert len(done) == 4 and len({t.number for t in trials}) == len(trials)
    assert (cwd / "tune-a" / "best.nn").read_text() == (cwd / "tune-b" / "best.nn").read_text()

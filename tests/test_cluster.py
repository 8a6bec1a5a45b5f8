"""Extraction on a real Dask cluster: a `dask scheduler` and `dask worker` processes.

The processes are started and stopped by the tests, on localhost. A test-only plugin
(tests/plugins/emofeat-faults) injects the faults: a worker that dies on an input, a task
held until the test releases it (so a kill lands mid-input, not by timing).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import emofeat
from emofeat.samples import write_audio, write_video

REPO = Path(__file__).resolve().parents[1]
FAULTS_SRC = REPO / "tests" / "plugins" / "emofeat-faults"
DASK = str(Path(sys.executable).with_name("dask"))


def wait_for(check, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Cluster:
    """A scheduler and named workers in their own processes (killed at the end)."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env = root, env
        self.procs: dict[str, subprocess.Popen] = {}
        file = root / "scheduler.json"
        self.procs["scheduler"] = self._start(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--scheduler-file", str(file)], "scheduler"
        )  # fmt: skip
        self.address = wait_for(
            lambda: file.exists() and json.loads(file.read_text() or "{}").get("address"),
            60,
            "the scheduler file",
        )
        self.file = file

    def _start(self, cmd: list[str], name: str, env: dict[str, str] | None = None):
        log = (self.root / f"{name}.log").open("w")
        return subprocess.Popen(
            cmd, env={**os.environ, **self.env, **(env or {})}, stdout=log, stderr=log
        )

    def add_worker(self, name: str, env: dict[str, str] | None = None) -> None:
        self.procs[name] = self._start(
            [DASK, "worker", self.address, "--nthreads", "1", "--nworkers", "1", "--name", name,
             "--no-dashboard", "--death-timeout", "60"], name, env,
        )  # fmt: skip

    def wait_workers(self, n: int) -> None:
        from distributed import Client

        with Client(self.address, timeout=30) as client:
            client.wait_for_workers(n, timeout=60)

    def worker_pids(self) -> dict[str, int]:
        from distributed import Client

        with Client(self.address, timeout=30) as client:
            info = client.scheduler_info()["workers"]
            pids = client.run(os.getpid)
            return {info[a]["name"]: pid for a, pid in pids.items()}

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The fault-injection plugin, pip-installed into a folder put on PYTHONPATH."""
    site = tmp_path_factory.mktemp("site")
    res = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
         "--no-build-isolation", "--target", str(site), str(FAULTS_SRC)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    shutil.rmtree(FAULTS_SRC / "build", ignore_errors=True)
    return site


@pytest.fixture()
def faults_dir(tmp_path) -> Path:
    d = tmp_path / "faults"
    d.mkdir()
    return d


@pytest.fixture()
def env(site, faults_dir) -> dict[str, str]:
    return {
        "PYTHONPATH": str(site),
        "EMOFEAT_FAULTS_DIR": str(faults_dir),
        "OMP_NUM_THREADS": "1",
    }


@pytest.fixture()
def cluster(tmp_path, env):
    c = Cluster(tmp_path, env)
    c.add_worker("w1")
    c.add_worker("w2")
    c.wait_workers(2)
    yield c
    c.close()


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("media")
    for k in range(3):
        write_audio(d / f"a{k}.wav", duration=3.0 + k, f0=120.0 + 20 * k)
    write_video(d / "v0.mp4", duration=2.0, fps=10)
    return d


def emofeat_cli(args: list[str], env: dict[str, str], cwd: Path, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "emofeat", *args],
        env={**os.environ, **env},
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def run_cli(args, env, cwd, timeout=300) -> tuple[int, str]:
    proc = emofeat_cli(args, env, cwd)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out + err


def store_data(path: Path) -> dict[tuple[str, str, str], tuple[np.ndarray, np.ndarray]]:
    """Every stream of every item: values and validity, to compare two stores."""
    out = {}
    with emofeat.open_store(path) as store:
        for key in store.items():
            for ex in store.extractors(key):
                for stream in store.streams(key, ex):
                    data = store.read(key, ex, stream)
                    out[(key, ex, stream)] = (data.data, data.mask)
    return out


def assert_same_stores(a: Path, b: Path) -> None:
    da, db = store_data(a), store_data(b)
    assert sorted(da) == sorted(db)
    for k in da:
        np.testing.assert_array_equal(da[k][0], db[k][0], err_msg=str(k))
        np.testing.assert_array_equal(da[k][1], db[k][1], err_msg=str(k))


def run_log(path: Path):
    with emofeat.open_store(path) as store:
        return store.run_log()


PLUGINS = ["-p", "egemaps", "-p", "functionals", "-p", "faults"]


@pytest.fixture()
def local_store(media, env, tmp_path) -> Path:
    rc, out = run_cli(["extract", *PLUGINS, str(media), "-o", "local.h5"], env, tmp_path)
    assert rc == 0, out
    return tmp_path / "local.h5"


def test_cluster_run_equals_a_local_run(cluster, media, env, tmp_path, local_store):
    rc, out = run_cli(
        ["extract", *PLUGINS, str(media), "-o", "dask.h5", "--scheduler", cluster.address],
        env,
        tmp_path,
    )
    assert rc == 0, out
    assert_same_stores(local_store, tmp_path / "dask.h5")
    log = run_log(tmp_path / "dask.h5")
    inputs = log[log["event"] == "input"]
    assert len(inputs) == 4
    assert all(w.startswith(("w1 ", "w2 ")) for w in inputs["worker"]), list(inputs["worker"])
    assert (inputs["seconds"] > 0).all()
    # a scheduler file works as well as an address; a second run changes nothing
    rc, out = run_cli(
        ["extract", *PLUGINS, str(media), "-o", "dask.h5", "--scheduler", str(cluster.file)],
        env,
        tmp_path,
    )
    assert rc == 0, out
    log = run_log(tmp_path / "dask.h5")
    last = log[(log["event"] == "input") & (log["run"] == log["run"].iloc[-1])]
    assert list(last["status"]) == ["unchanged"] * 4


def test_items_travel_as_bytes_without_a_shared_filesystem(cluster, media, env, tmp_path,
                                                           local_store):  # fmt: skip
    rc, out = run_cli(
        ["extract", *PLUGINS, str(media), "-o", "ship.h5", "--scheduler", cluster.address,
         "--no-shared-fs"], env, tmp_path,
    )  # fmt: skip
    assert rc == 0, out
    assert_same_stores(local_store, tmp_path / "ship.h5")


def test_worker_killed_mid_input_loses_nothing(cluster, media, env, tmp_path, faults_dir):
    inputs = tmp_path / "in"
    shutil.copytree(media, inputs)
    write_audio(inputs / "hold0.wav", duration=2.0)
    proc = emofeat_cli(
        ["extract", *PLUGINS, str(inputs), "-o", "kill.h5", "--scheduler", cluster.address],
        env,
        tmp_path,
    )
    started = wait_for(lambda: list(faults_dir.glob("started-hold0-*")), 120, "hold0 to start")
    pid = int(started[0].name.rsplit("-", 1)[1])
    os.kill(pid, signal.SIGKILL)  # the worker process (its nanny starts a new one)
    (faults_dir / "release").touch()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, out + err
    # the reference: the same inputs in one process
    rc, ref_out = run_cli(["extract", *PLUGINS, str(inputs), "-o", "ref.h5"], env, tmp_path)
    assert rc == 0, ref_out
    assert_same_stores(tmp_path / "ref.h5", tmp_path / "kill.h5")
    log = run_log(tmp_path / "kill.h5")
    items = log[(log["event"] == "item") & (log["status"] == "done")]
    assert not items.duplicated(["key", "extractor"]).any()  # nothing committed twice
    assert not list((tmp_path / "kill.h5.d" / ".staging").glob("hold0.*"))


def test_input_that_kills_every_worker_fails_alone(cluster, media, env, tmp_path):
    inputs = tmp_path / "in"
    shutil.copytree(media, inputs)
    write_audio(inputs / "kill0.wav", duration=1.0)
    rc, out = run_cli(
        ["extract", *PLUGINS, str(inputs), "-o", "k.h5", "--scheduler", cluster.address],
        {**env, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1"},
        tmp_path,
    )
    assert rc == 1, out
    log = run_log(tmp_path / "k.h5")
    inputs_log = log[log["event"] == "input"].set_index("key")
    assert inputs_log.loc["kill0", "status"] == "failed"
    assert "worker died while processing" in inputs_log.loc["kill0", "message"]
    assert (inputs_log.drop(index="kill0")["status"] == "done").all()


def test_scheduler_unreachable_is_a_usage_error(media, env, tmp_path):
    t0 = time.monotonic()
    rc, out = run_cli(
        ["extract", "-p", "egemaps", str(media), "-o", "x.h5", "--scheduler",
         "tcp://127.0.0.1:9", "--scheduler-timeout", "3"], env, tmp_path,
    )  # fmt: skip
    assert rc == 2, out
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9 within 3 s" in out
    assert time.monotonic() - t0 < 60
    assert not (tmp_path / "x.h5").exists()
    rc, out = run_cli(
        ["extract", "-p", "egemaps", str(media), "-o", "x.h5", "--scheduler", "nofile.json"],
        env,
        tmp_path,
    )
    assert rc == 2 and "scheduler file nofile.json does not exist" in out


def test_worker_without_the_plugin_fails_each_input_by_name(media, env, site, tmp_path):
    c = Cluster(tmp_path, env)
    try:
        c.add_worker("bare", env={"PYTHONPATH": ""})  # the faults plugin is not installed
        c.wait_workers(1)
        rc, out = run_cli(
            ["extract", *PLUGINS, str(media), "-o", "m.h5", "--scheduler", c.address],
            env,
            tmp_path,
        )
    finally:
        c.close()
    assert rc == 1, out
    log = run_log(tmp_path / "m.h5")
    failed = log[(log["event"] == "input") & (log["status"] == "failed")]
    assert len(failed) == 4
    for message in failed["message"]:
        assert "worker bare" in message and "faults" in message


def test_coordinator_killed_resumes(cluster, media, env, tmp_path, faults_dir):
    inputs = tmp_path / "in"
    shutil.copytree(media, inputs)
    write_audio(inputs / "hold0.wav", duration=2.0)
    args = ["extract", *PLUGINS, str(inputs), "-o", "r.h5", "--scheduler", cluster.address]
    proc = emofeat_cli(args, env, tmp_path)

    def started():
        assert proc.poll() is None, proc.communicate()
        return list(faults_dir.glob("started-hold0-*"))

    wait_for(started, 120, "hold0 to start")

    def committed() -> int:
        try:
            with emofeat.open_store(tmp_path / "r.h5") as store:
                return len(store.items())
        except Exception:
            return 0

    wait_for(lambda: committed() >= 2, 120, "two inputs committed")
    proc.kill()  # the coordinator, mid-run
    proc.communicate()
    (faults_dir / "release").touch()
    rc, out = run_cli(args, env, tmp_path)
    assert rc == 0, out
    assert "unchanged" in out
    rc, ref = run_cli(["extract", *PLUGINS, str(inputs), "-o", "ref.h5"], env, tmp_path)
    assert rc == 0, ref
    assert_same_stores(tmp_path / "ref.h5", tmp_path / "r.h5")


def test_progress_of_worker_tasks_reaches_the_coordinator(media, tmp_path):
    """-j 2 (a local cluster): the per-extractor progress workers publish arrives."""
    from emofeat.api import build_jobs
    from emofeat.engine import RunOptions, order_jobs, run
    from emofeat.store import FeatureStore

    jobs = order_jobs(build_jobs(["egemaps"], []))
    seen: list[tuple] = []
    inputs = sorted(media.glob("a*.wav"))
    with FeatureStore(tmp_path / "p.h5", mode="a") as store:
        summary = run(
            store, inputs, jobs, RunOptions(workers=2), progress=lambda *a: seen.append(a)
        )
    assert summary.count("done") == 3
    assert {key for key, *_ in seen} == {"a0", "a1", "a2"}
    finals = {key: done for key, label, done, total in seen if done == total}
    assert finals == {"a0": 3.0, "a1": 4.0, "a2": 5.0}  # seconds of audio per input
    assert all(r.worker for r in summary.results)  # each names the worker that ran it


def test_local_cluster_for_cuda_offers_the_gpu_to_its_workers():
    """``-j N --device cuda`` on one machine: the local workers share its GPU (a cluster
    whose workers offer none is refused before anything runs)."""
    from emofeat import cluster
    from emofeat.engine import RunOptions

    for gpu in (True, False):
        local, client = cluster.local_cluster(1, gpu)
        try:
            if gpu:
                assert cluster._check_resources(client, RunOptions(device="cuda")) == {"GPU": 1}
            else:
                with pytest.raises(cluster.SchedulerError, match="offer a GPU"):
                    cluster._check_resources(client, RunOptions(device="cuda:0"))
            assert cluster._check_resources(client, RunOptions(device="cpu")) is None
        finally:
            client.close()
            local.close()

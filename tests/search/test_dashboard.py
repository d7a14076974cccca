"""optuna-dashboard: each trial's learning curve reaches the Optuna storage, and `python -m search.dashboard` serves it.

The searcher is driven here as Ray Tune drives it in the driver (a result per
epoch, then the trial's completion), so no Ray is needed. The per-epoch
validation accuracy must land as intermediate values in one transaction when
the trial finishes, never one storage write per epoch (issue 14). The command
is run for real on a free port of 127.0.0.1 and asked over HTTP; bad input is
one line and exit status 2.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
import sqlalchemy

import runfolder
import space
from commands import ROOT, SMOKE, call_main, module_env
from search import dashboard
from search._searcher import ScreeningOptunaSearch, open_storage, report_intermediate_values


def _searcher(run_dir: Path) -> ScreeningOptunaSearch:
    """The runner's searcher over the smoke study, its storage the run folder's study.db."""
    study = space.load_study(SMOKE)

    def screen(params: dict) -> tuple[dict, None]:
        return space.resolve(study, params).to_dict(), None

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "study.yaml").write_text(study.to_yaml())
    return ScreeningOptunaSearch(
        space=space.define_by_run(study), metric="objective.val_acc", mode="max",
        sampler=optuna.samplers.RandomSampler(seed=0), storage=open_storage(runfolder.RunFolder(run_dir).storage_url()),
        study_name=study.name, screen=screen, on_rejected=lambda *args: None, objective_metrics=["objective.val_acc"])


def _commits(storage: optuna.storages.BaseStorage) -> list[int]:
    """A list that grows by one at every commit of the storage's database."""
    commits: list[int] = []
    backend = getattr(storage, "_backend", storage)
    sqlalchemy.event.listen(backend.engine, "commit", lambda connection: commits.append(1))
    return commits


def _epoch(epoch: int, val_acc: float, **final: object) -> dict:
    return {"epoch": epoch, "val_acc": val_acc, "train_loss": 1.0, "objective.val_acc": val_acc, "final": False, **final}


def _trained_run(run_dir: Path) -> ScreeningOptunaSearch:
    """A complete trial of 3 epochs and one stopped by ASHA after its first epoch, as Tune reports them."""
    searcher = _searcher(run_dir)
    for trial in ("complete", "pruned"):
        searcher.suggest(trial)
    commits = _commits(searcher.optuna_study._storage)
    for epoch, val_acc in ((1, 0.3), (2, 0.4)):
        searcher.on_trial_result("complete", _epoch(epoch, val_acc))
    searcher.on_trial_result("pruned", _epoch(1, 0.2))
    assert commits == [], "an epoch's result must not write to the storage while the trial trains"
    final = _epoch(3, 0.5, final=True, status="complete", curve=[0.3, 0.4, 0.5], val_acc_best=0.5, test_acc=0.45)
    searcher.on_trial_result("complete", final)
    searcher.on_trial_complete("complete", final)
    searcher.on_trial_complete("pruned", _epoch(1, 0.2))
    return searcher


def test_the_learning_curve_reaches_the_storage_when_the_trial_finishes(tmp_path: Path) -> None:
    _trained_run(tmp_path / "run")
    stored = optuna.load_study(study_name="smoke", storage=runfolder.RunFolder(tmp_path / "run").storage_url())
    complete, pruned = stored.get_trials()
    assert complete.state == optuna.trial.TrialState.COMPLETE
    assert complete.intermediate_values == {1: 0.3, 2: 0.4, 3: 0.5}  # each epoch's accuracy, not the best so far
    assert complete.user_attrs["result"]["val_acc_per_epoch"] == [0.3, 0.4, 0.5]
    assert pruned.state == optuna.trial.TrialState.PRUNED and pruned.intermediate_values == {1: 0.2}


def test_a_whole_curve_is_one_transaction(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}")
    study = optuna.create_study(storage=storage, study_name="one")
    trial = study.ask()
    commits = _commits(storage)
    report_intermediate_values(study, trial, {epoch: 0.01 * epoch for epoch in range(1, 51)} | {51: float("nan")})
    assert len(commits) == 1
    assert study.get_trials()[0].intermediate_values == {epoch: pytest.approx(0.01 * epoch) for epoch in range(1, 51)}
    # Multi-objective studies keep the curve in `result` only: their samplers read no intermediate values.
    multi = optuna.create_study(storage=storage, study_name="two", directions=["maximize", "minimize"])
    report_intermediate_values(multi, multi.ask(), {1: 0.5})
    assert multi.get_trials()[0].intermediate_values == {}


def _listening_addresses(port: int) -> list[str]:
    """The local addresses of the sockets that listen on `port`, from /proc/net/tcp and tcp6 (Linux)."""
    found = []
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/net/{table}")
        for line in (path.read_text().splitlines()[1:] if path.is_file() else []):
            local, state = line.split()[1], line.split()[3]
            address, _, hexport = local.partition(":")
            if state == "0A" and int(hexport, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(address)
                packed = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))  # host-order words
                found.append(socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, packed))
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.skipif(importlib.util.find_spec("optuna_dashboard") is None,
                    reason="the dashboard extra: pip install 'resnas[dashboard]'")
def test_the_dashboard_serves_the_runs_curves_on_loopback(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    _trained_run(run_dir)
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "search.dashboard", str(run_dir), "--port", str(port)], cwd=ROOT,
                              env=module_env(PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    try:
        first = server.stdout.readline()
        assert first.startswith(f"optuna-dashboard: http://127.0.0.1:{port}/ serving sqlite:///"), first
        deadline, answer = time.monotonic() + 60, None
        while answer is None and time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/1?after=0", timeout=5) as page:
                    answer = json.load(page)
            except OSError:
                time.sleep(0.2)
        assert answer is not None, "the dashboard did not answer"
        curves = {t["number"]: [(v["step"], v["value"]) for v in t["intermediate_values"]] for t in answer["trials"]}
        assert curves == {0: [(1, 0.3), (2, 0.4), (3, 0.5)], 1: [(1, 0.2)]}
        # On loopback only, as the kernel lists its listening sockets.
        if Path("/proc/net/tcp").is_file():
            assert _listening_addresses(port) == ["127.0.0.1"]
        refused = call_dashboard([str(run_dir), "--port", str(port)])
        assert refused.returncode == 2 and f"--port {port}: cannot listen on 127.0.0.1:{port}" in refused.stderr
    finally:
        server.terminate()
        server.wait(timeout=30)


def call_dashboard(args: list[str]) -> subprocess.CompletedProcess:
    """`python -m search.dashboard ARGS` in this process, its output captured (no interpreter start-up)."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = dashboard.main(args)
        except SystemExit as stop:
            status = stop.code
    return subprocess.CompletedProcess(args, status, out.getvalue(), err.getvalue())


def test_bad_input_is_one_line_and_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "not_sqlite").mkdir()
    (tmp_path / "not_sqlite" / "study.db").write_text("not a database")
    for args, expected in (([str(tmp_path / "nowhere")], "no such run folder"),
                           ([str(tmp_path / "empty")], "no study.db; give a run folder written by python -m search.run"),
                           ([str(tmp_path / "not_sqlite")], "study.db: not an SQLite database"),
                           ([str(tmp_path / "empty"), "--port", "0"], "--port: got 0; allowed: an integer in [1, 65535]"),
                           ([str(tmp_path / "empty"), "--port", "x"], "argument --port: invalid int value")):
        assert expected in call_main(dashboard.main, args, capsys).bad_input_line()
    assert (tmp_path / "not_sqlite" / "study.db").read_text() == "not a database"  # read, never written
    # Without the extra: the line says what to install.
    _searcher(tmp_path / "run")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "optuna_dashboard" else real(name, *a))
    line = call_main(dashboard.main, [str(tmp_path / "run")], capsys).bad_input_line()
    assert "needs the optuna-dashboard package" in line and "pip install 'resnas[dashboard]'" in line


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list:
    """What the dashboard would serve: optuna-dashboard's run_server replaced by a recorder that returns at once."""
    optuna_dashboard = pytest.importorskip("optuna_dashboard")
    storages: list = []
    monkeypatch.setattr(optuna_dashboard, "run_server", lambda storage, **options: storages.append(storage))
    monkeypatch.setattr(dashboard, "_port_refusal", lambda port, error=None: None)
    return storages


def _naming_storage(run_dir: Path, url: str) -> None:
    """Let the run folder's study.yaml name `url` in search.storage, as a folder from elsewhere may."""
    import yaml

    study = yaml.safe_load((run_dir / "study.yaml").read_text())
    study.setdefault("search", {})["storage"] = url
    (run_dir / "study.yaml").write_text(yaml.safe_dump(study))


def test_the_storage_a_folder_names_is_never_opened(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    served: list) -> None:
    run_dir = tmp_path / "run"
    _searcher(run_dir)
    (run_dir / "study.db").unlink()
    outside = tmp_path / "elsewhere" / "created.db"
    outside.parent.mkdir()
    _naming_storage(run_dir, f"sqlite:///{outside}")
    line = call_main(dashboard.main, [str(run_dir)], capsys).bad_input_line()
    assert "no study.db" in line and "--storage URL" in line and not outside.exists() and not served
    # The folder's own study.db is served whatever study.yaml names, a URL that does not parse included.
    _searcher(tmp_path / "run2")
    _naming_storage(tmp_path / "run2", "not a url")
    assert call_main(dashboard.main, [str(tmp_path / "run2")], capsys).returncode == 0
    assert [storage.url for storage in served] == [f"sqlite:///{tmp_path / 'run2' / 'study.db'}"]


def test_a_study_db_that_is_a_link_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], served: list) -> None:
    _searcher(tmp_path / "real")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "study.db").symlink_to(tmp_path / "real" / "study.db")
    line = call_main(dashboard.main, [str(tmp_path / "run")], capsys).bad_input_line()
    assert "study.db: a link" in line and not served


@pytest.mark.parametrize("url,message", [
    ("not a url", "is not a storage URL"),
    ("sqlite:///{tmp}/missing.db", "no such file; the dashboard only reads a storage"),
    ("sqlite://", "names no database file"),
    ("nosuchdialect://user:secret@host/db", "cannot be opened"),
    ("postgresql://user:secret@127.0.0.1:1/db", "cannot be opened"),
])
def test_a_bad_storage_url_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], served: list,
                                       url: str, message: str) -> None:
    _searcher(tmp_path / "run")
    line = call_main(dashboard.main, [str(tmp_path / "run"), "--storage", url.format(tmp=tmp_path)],
                     capsys).bad_input_line()
    assert message in line and "secret" not in line and not served
    assert not (tmp_path / "missing.db").exists()


def test_a_storage_given_on_the_command_line_is_served(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       served: list) -> None:
    _searcher(tmp_path / "other")
    (tmp_path / "run").mkdir()
    url = f"sqlite:///{tmp_path / 'other' / 'study.db'}"
    assert call_main(dashboard.main, [str(tmp_path / "run"), "--storage", url], capsys).returncode == 0
    assert [storage.url for storage in served] == [url]

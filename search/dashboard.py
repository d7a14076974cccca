"""`python -m search.dashboard RUN_DIR [--port N]`: serve a run's Optuna storage with optuna-dashboard on 127.0.0.1.

The dashboard shows every trial of the run as Optuna recorded it: its
parameters, its state and value, its `result` attribute (final metrics), and
its learning curve (the validation accuracy per epoch, stored as
intermediate values when the trial finished; search._searcher). It serves
the run's study.db, or the storage the study names in `search.storage`, on
127.0.0.1 only: open it from another machine through an SSH tunnel
(`ssh -L 8080:127.0.0.1:8080 host`). A retrain job is a run folder too:
`python -m search.dashboard runs/<study>/retrain/<job>`.

Needs the optional extra: `pip install 'resnas[dashboard]'`. A folder
without a storage, a port in use or a missing extra is one line on stderr
and exit status 2.
"""

from __future__ import annotations

import importlib.util
import socket
import sys
from pathlib import Path
from typing import Any

from models.cli import OneLineParser

EXIT_BAD_INPUT = 2
DEFAULT_PORT = 8080
HOST = "127.0.0.1"  # never all interfaces: the dashboard can edit and delete studies, and has no login


def _parse_args(argv: list[str] | None) -> Any:
    parser = OneLineParser(prog="python -m search.dashboard", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a run folder written by python -m search.run (or a retrain job's folder)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port on {HOST} (default: {DEFAULT_PORT})")
    return parser.parse_args(argv)


def storage_of(run_dir: Path) -> str:
    """The Optuna storage URL of a run folder, checked to be there and Optuna's; RunError (one line) if not."""
    import runfolder

    from ._resume import RunError, _check_sqlite

    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: no such run folder")
    folder = runfolder.RunFolder(run_dir)
    try:
        study = runfolder.read_study_record(run_dir)
    except runfolder.RunFolderError as error:
        raise RunError(str(error)) from None
    named = study.storage if study is not None else None
    if named:
        return str(named)  # the study's own storage (a database server): Optuna checks it as it connects
    if not folder.study_db.is_file():
        raise RunError(f"{run_dir}: no {runfolder.STUDY_DB}; give a run folder written by python -m search.run")
    _check_sqlite(folder.study_db)  # opened read-only: a stray file is refused, not turned into a storage
    return folder.storage_url()


def main(argv: list[str] | None = None) -> int:
    """Entry point; serves until Ctrl-C and returns the exit status."""
    from ._resume import RunError

    args = _parse_args(argv)
    if not 1 <= args.port <= 65535:
        print(f"error: --port: got {args.port}; allowed: an integer in [1, 65535]", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        storage = storage_of(Path(args.run_dir))
    except RunError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if importlib.util.find_spec("optuna_dashboard") is None:
        print("error: python -m search.dashboard needs the optuna-dashboard package, which is not installed: "
              "pip install 'resnas[dashboard]' (in a checkout: .venv/bin/python -m pip install -c constraints.txt "
              "-e '.[dashboard]')", file=sys.stderr)
        return EXIT_BAD_INPUT
    refusal = _port_refusal(args.port)
    if refusal:
        print(f"error: {refusal}", file=sys.stderr)
        return EXIT_BAD_INPUT
    from optuna_dashboard import run_server

    print(f"optuna-dashboard: http://{HOST}:{args.port}/ serving {storage} (Ctrl-C stops it)", flush=True)
    try:
        run_server(storage, host=HOST, port=args.port)
    except OSError as error:  # taken since it was probed
        print(f"error: {_port_refusal(args.port, error)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        pass
    return 0


def _port_refusal(port: int, error: OSError | None = None) -> str | None:
    """Why the dashboard cannot listen on `port` of 127.0.0.1 (probed by binding it, as the server will); None if it can."""
    if error is None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
            try:
                probe.bind((HOST, port))
                return None
            except OSError as refused:
                error = refused
    return (f"--port {port}: cannot listen on {HOST}:{port} ({error.strerror or error}); "
            f"give another with --port")


if __name__ == "__main__":
    sys.exit(main())

"""`python -m search.dashboard RUN_DIR [--port N]`: serve a run's Optuna storage with optuna-dashboard on 127.0.0.1.

The dashboard shows every trial of the run as Optuna recorded it: its
parameters, its state and value, its `result` attribute (final metrics), and
its learning curve (the validation accuracy per epoch, stored as
intermediate values when the trial finished; search._searcher). It serves
the run's study.db (a regular file of the folder, never a link), or the
storage given with `--storage URL`, on 127.0.0.1 only: open it from another machine through an SSH tunnel
(`ssh -L 8080:127.0.0.1:8080 host`). A retrain job is a run folder too:
`python -m search.dashboard runs/<study>/retrain/<job>`.

The storage a study names in `search.storage` is never opened on the
folder's word: the folder may come from anywhere, and a URL in it could make
Optuna create a database anywhere or connect to any server. Such a study is
served with `--storage URL`, which the user types. The dashboard only reads:
a SQLite storage must already be there, and no table is created.

Needs the optional extra: `pip install 'resnas[dashboard]'`. A folder
without a storage, a bad URL, a port in use or a missing extra is one line on
stderr and exit status 2.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import stat
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
    parser.add_argument("--storage", metavar="URL", default=None,
                        help="serve this Optuna storage instead of the folder's study.db, e.g. the database server "
                             "the study names in search.storage (postgresql://user@host/db)")
    return parser.parse_args(argv)


def _shown(url: Any) -> str:
    """A storage URL as printed: its password hidden."""
    return url.render_as_string(hide_password=True)


def storage_of(run_dir: Path, given: str | None = None) -> str:
    """The storage to serve: `given` (the command line's --storage), else the folder's own study.db; RunError if neither.

    study.yaml's `search.storage` is only named in the refusal, never opened:
    the folder is untrusted input (DESIGN.md, "Run folder").
    """
    import runfolder

    from ._resume import RunError, _check_sqlite

    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: no such run folder")
    if given is not None:
        return _checked_url(given)
    folder = runfolder.RunFolder(run_dir)
    try:
        study = runfolder.read_study_record(run_dir)
    except runfolder.RunFolderError as error:
        raise RunError(str(error)) from None
    database = folder.study_db
    if not os.path.lexists(database):
        named = study.storage if study is not None else None
        hint = (f"its study.yaml names the storage {named!r} (search.storage), which is opened only when you give "
                f"it: --storage URL" if named else "give a run folder written by python -m search.run")
        raise RunError(f"{run_dir}: no {runfolder.STUDY_DB}; {hint}")
    mode = os.lstat(database).st_mode
    if not stat.S_ISREG(mode):
        kind = "a link" if stat.S_ISLNK(mode) else "not a regular file"
        raise RunError(f"{database}: {kind}; the dashboard serves only the folder's own {runfolder.STUDY_DB}, a "
                       f"regular file inside it (give another storage with --storage URL)")
    _check_sqlite(database)  # opened read-only: a stray file is refused, not turned into a storage
    return folder.storage_url()


def _checked_url(given: str) -> str:
    """A --storage URL that SQLAlchemy can parse; a SQLite one must name a database that is there and Optuna's."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from ._resume import RunError, _check_sqlite

    try:
        url = make_url(given)
    except (ArgumentError, ValueError) as error:
        raise RunError(f"--storage: {given!r} is not a storage URL ({' '.join(str(error).split())}); allowed: "
                       f"dialect://user@host/database, e.g. sqlite:///runs/smoke/study.db") from None
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            raise RunError(f"--storage {_shown(url)}: names no database file; the dashboard serves a study that "
                           f"exists, e.g. sqlite:///runs/smoke/study.db")
        database = Path(url.database)
        if not database.is_file():  # Optuna would create it: the dashboard writes nothing
            raise RunError(f"--storage {_shown(url)}: {database}: no such file; the dashboard only reads a storage")
        _check_sqlite(database)
    return given


def _open_storage(url: str) -> Any:
    """Optuna's storage at `url`, connected without creating tables; RunError (one line) when it cannot be opened."""
    import optuna
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from ._resume import RunError

    try:
        return optuna.storages.RDBStorage(url, skip_table_creation=True)
    except (SQLAlchemyError, ImportError, ValueError, OSError, RuntimeError) as error:
        lines = str(error).strip().splitlines() or [type(error).__name__]
        raise RunError(f"--storage {_shown(make_url(url))}: cannot be opened ({lines[0]})") from None


def main(argv: list[str] | None = None) -> int:
    """Entry point; serves until Ctrl-C and returns the exit status."""
    from ._resume import RunError

    args = _parse_args(argv)
    if not 1 <= args.port <= 65535:
        print(f"error: --port: got {args.port}; allowed: an integer in [1, 65535]", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        storage = storage_of(Path(args.run_dir), args.storage)
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

    try:
        opened = _open_storage(storage)
    except RunError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    from sqlalchemy.engine import make_url

    print(f"optuna-dashboard: http://{HOST}:{args.port}/ serving {_shown(make_url(storage))} (Ctrl-C stops it)",
          flush=True)
    try:
        run_server(opened, host=HOST, port=args.port)
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

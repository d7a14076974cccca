"""Starting or joining Ray for a study: a local Ray bound to this machine, or the cluster the user names."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any


class RayStartError(ValueError):
    """Ray could not be started or joined; the message says why and what to do."""


def init_ray(address: str | None, dashboard: bool) -> str | None:
    """Start a local Ray (dashboard on 127.0.0.1) or join the cluster at `address` / RAY_ADDRESS; the dashboard URL."""
    import optuna
    import ray

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False,
                              "configure_logging": True}
    if address:
        try:
            context = ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError) as error:
            hint = ("; a cluster started with token authentication needs RAY_AUTH_MODE=token and its "
                    "token (~/.ray/auth_token or RAY_AUTH_TOKEN) on this machine"
                    if "auth" in str(error).lower() else "")
            raise RayStartError(f"--address {address}: cannot join the Ray cluster "
                                f"({str(error).splitlines()[0]}){hint}") from None
    else:
        context = ray.init(include_dashboard=dashboard, dashboard_host="127.0.0.1", **kwargs)
    url = getattr(context, "dashboard_url", None)
    return f"http://{url}" if url else None


def dashboard_line(url: str) -> str:
    """The line that tells the user where the dashboard is and where Ray keeps its API token."""
    return f"Ray dashboard: {url} (API token in {Path.home() / '.ray' / 'auth_token'})"


def shutdown_ray() -> None:
    """Stop the Ray this driver started or joined (never a cluster's other processes)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()

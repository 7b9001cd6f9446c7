"""Subcommands `ui` and `dashboard`: looking at studies in a browser.

`tuner ui` serves MLflow's UI over the tracking store: the record (parent and trial runs, their
curves, artifacts, models). `tuner dashboard` serves optuna-dashboard over the study storage: the
live view of studies as Optuna sees them, updated while they run. Both listen on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tuner.cli._ui import DEFAULT_PORT, HOST, check_port, serve, sigterm_as_interrupt
from tuner.errors import require_extra

DASHBOARD_PORT = 8080


def register(sub: Any) -> None:
    ui = sub.add_parser("ui", help="start the MLflow UI on 127.0.0.1 over the tracking store and "
                        "print the link to each experiment's runs")
    ui.add_argument("--port", metavar="PORT", type=int, default=DEFAULT_PORT,
                    help=f"port on 127.0.0.1 (default: {DEFAULT_PORT})")
    ui.add_argument("--tracking-uri", metavar="URI", help="MLflow tracking store (default: "
                    "MLFLOW_TRACKING_URI or sqlite:///mlflow.db, as for `tuner run`)")
    ui.add_argument("--experiment", metavar="NAME", help="print the link to this experiment only "
                    "(default: every experiment in the store)")
    ui.add_argument("--wait", type=float, default=120.0, metavar="SECONDS",
                    help="how long to wait for the server to answer (default: 120)")
    ui.set_defaults(handler=cmd_ui)

    dashboard = sub.add_parser(
        "dashboard", help="start optuna-dashboard on 127.0.0.1 over the study storage: the "
        "studies live, as they run (needs the dashboard extra)")
    dashboard.add_argument("--storage", metavar="URL", help="Optuna storage (default: tuner.journal)")
    dashboard.add_argument("--port", metavar="PORT", type=int, default=DASHBOARD_PORT,
                           help=f"port on 127.0.0.1 (default: {DASHBOARD_PORT})")
    dashboard.set_defaults(handler=cmd_dashboard)


def cmd_ui(args: argparse.Namespace) -> int:
    check_port(args.port)  # before importing mlflow: a busy port fails at once
    from tuner.cli._ui import backend_store
    from tuner.tracking import list_experiments, store_uri

    uri = backend_store(store_uri(args.tracking_uri))  # a missing store fails before the listing
    experiments = list_experiments(uri, args.experiment)
    return serve(uri, args.port, args.wait, lambda line: print(line, flush=True), experiments)


def cmd_dashboard(args: argparse.Namespace) -> int:
    require_extra("dashboard", "`tuner dashboard`")
    check_port(args.port)
    from tuner.search import describe, open_storage

    storage = open_storage(args.storage)  # a bad URL or a missing driver fails here
    import optuna_dashboard

    app = optuna_dashboard.wsgi(storage.inner)  # the storage itself: the dashboard reads it live
    server = _server(app, args.port)
    count = len(storage.get_all_studies())
    print(f"optuna-dashboard: http://{HOST}:{args.port}/dashboard/  (storage "
          f"{describe(args.storage)}, {count} studies; Ctrl-C stops it)", flush=True)
    with sigterm_as_interrupt():
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            print("stopping optuna-dashboard", file=sys.stderr)
        finally:
            server.server_close()
    return 0


def _server(app: Any, port: int) -> Any:
    """A threaded WSGI server on 127.0.0.1 that logs no line per request (its modules load here:
    every other command would pay for them at its start)."""
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    class Threaded(ThreadingMixIn, WSGIServer):
        daemon_threads = True  # a browser's open connections do not hold up Ctrl-C

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # a line per request is noise
            pass

    return make_server(HOST, port, app, server_class=Threaded, handler_class=Quiet)

"""The Flower app of a SuperLink deployment: ``edgecomp.fl.app:server_app`` and ``:client_app``.

The ServerApp reads its ``FLConfig`` from the run config (the app's pyproject.toml, written by
``edgecomp fl run``); each SuperNode finds its data file in its ``data-path`` node config.
"""

from edgecomp.fl.client import make_client_app
from edgecomp.fl.server import make_server_app

server_app = make_server_app()
client_app = make_client_app()

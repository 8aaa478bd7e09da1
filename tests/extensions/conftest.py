"""jupyter_server's own test fixtures (jp_fetch, jp_server_config, ...), for this folder only:
their autouse event loop would clash with the sync Playwright tests elsewhere."""

from pytest_jupyter.jupyter_core import *  # noqa: F403
from pytest_jupyter.jupyter_server import *  # noqa: F403

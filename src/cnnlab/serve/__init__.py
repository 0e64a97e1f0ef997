"""``cnnlab serve``: a local web page that shows a trained network from inside.

:func:`create_app` (``serve/app.py``) builds the Starlette app for some run folders; the
routes speak HTTP and PNG, :mod:`cnnlab.serve.inference` is the only module that calls the
rest of cnnlab, :mod:`cnnlab.serve.limits` holds what the server allows, and ``static/`` is
the page (HTML, JavaScript and CSS, nothing fetched from elsewhere).
"""

from cnnlab.serve.app import create_app
from cnnlab.serve.limits import Limits

__all__ = ["Limits", "create_app"]

"""salvo's OpenAI-compatible proxy server (``salvo serve``).

    from salvo.proxy import ProxyServer

    async with ProxyServer("config.yaml", port=4000) as proxy:
        ...                                # any OpenAI client at proxy.url + "/v1"

:func:`create_app` gives the aiohttp application itself; run it with
``handler_cancellation=True`` so a client that goes away cancels its upstream call.
"""

from ._app import ProxyServer as ProxyServer
from ._app import create_app as create_app
from ._settings import ProxySettings as ProxySettings
from ._settings import load_settings as load_settings

__all__ = ["ProxyServer", "ProxySettings", "create_app", "load_settings"]

"""`import salvo` stays light: heavy dependencies load on first use, not at import."""

from __future__ import annotations

import subprocess
import sys


def test_import_salvo_defers_heavy_modules() -> None:
    code = (
        "import sys, salvo\n"
        "heavy = ['aiohttp', 'yaml', 'aiolimiter', 'sqlite3', 'redis', 'salvo.batches',"
        " 'salvo.proxy', 'opentelemetry', 'prometheus_client']\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
        "salvo.acreate_file\n"
        "print('salvo.batches' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == ["", "True"]

"""/docs works air-gapped: the page references only the sidecar's own copies of Swagger UI's files,
and the sidecar serves them; no CDN, no ReDoc (which would need one)."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from reconciler.cache import ValkeyCache
from reconciler.settings import Settings
from reconciler_api.app import create_app
from tests.valkey_server import ValkeyProcess


def test_swagger_ui_is_served_from_local_files(valkey_server: ValkeyProcess) -> None:
    cache = ValkeyCache.from_url(valkey_server.url)
    with TestClient(create_app(Settings(valkey_url="unused"), cache)) as client:
        page = client.get("/docs")
        assert page.status_code == 200
        assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
        assert assets, page.text
        for url in assets:
            assert url.startswith("/docs/assets/"), f"{url} is not served by the sidecar"
            answer = client.get(url)
            assert answer.status_code == 200 and len(answer.content) > 100, url
        assert "cdn" not in page.text.lower()
        assert "'/openapi.json'" in page.text or '"/openapi.json"' in page.text
        assert client.get("/openapi.json").status_code == 200
        assert client.get("/redoc").status_code == 404

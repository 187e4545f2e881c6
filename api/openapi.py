"""The API's OpenAPI document, from the code (docs/openapi.json; `scripts/openapi` writes it)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, cast

from api.app import create_app
from api.settings import ApiSettings
from domain.application import CaseWork
from jiuzhu.settings import Settings

__all__ = ["document", "document_text"]


def document() -> dict[str, Any]:
    """The OpenAPI document of the app (built without a database: nothing is called)."""
    app = create_app(Settings(), casework=cast(CaseWork, object()), api_settings=ApiSettings())
    return app.openapi()


def document_text() -> str:
    """The document as it is checked in: indented JSON, non-ASCII kept, a final newline."""
    return json.dumps(document(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":  # python -m api.openapi docs/openapi.json
    Path(sys.argv[1]).write_text(document_text(), encoding="utf-8")

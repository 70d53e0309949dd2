from __future__ import annotations

import pytest


@pytest.fixture(params=["websocket", "longpoll"])
def transport(request: pytest.FixtureRequest) -> str:
    """Run the test over each transport the SDK speaks."""
    return request.param

"""aioresponses, made to build responses the way aiohttp 3.14 constructs them.

aioresponses 0.7.9 builds each mocked `ClientResponse` itself, without the
`stream_writer` keyword that aiohttp 3.14 made required, so every mocked
request fails with a TypeError (aioresponses issue #289). aiohttp reads that
writer in one place only: when no writer task is passed (aioresponses passes
None, meaning "the request is already sent"), it copies `output_size` from it.

The adapter therefore supplies a stand-in writer of a finished, empty upload,
and makes it the default response class of every mock through aioresponses'
own `response_class` option. Nothing else of aioresponses or aiohttp is
touched. Once aioresponses passes a writer itself, this class gets it and the
stand-in is unused; delete this module when the fix is released.

Test-only: the runtime keeps aiohttp current (3.14 carries a security fix).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from aiohttp import ClientResponse
from aioresponses import aioresponses as _aioresponses

# A request body that has been written in full: nothing more will be sent.
_FINISHED_UPLOAD: Any = SimpleNamespace(output_size=0)


class _MockedResponse(ClientResponse):
    """A ClientResponse that accepts being built without a stream writer."""

    def __init__(
        self, method: str, url: Any, *, stream_writer: Any = None, **kwargs: Any
    ) -> None:
        super().__init__(
            method, url, stream_writer=stream_writer or _FINISHED_UPLOAD, **kwargs
        )


class aioresponses(_aioresponses):
    """aioresponses whose mocks default to a response aiohttp 3.14 accepts."""

    def add(self, url: Any, method: str = "GET", **kwargs: Any) -> None:
        """Mock `method url`; options by keyword, as the `get`/`post` helpers pass them.

        A response class given explicitly still wins.
        """
        if kwargs.get("response_class") is None:
            kwargs["response_class"] = _MockedResponse
        super().add(url, method, **kwargs)

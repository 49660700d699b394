"""gzip for whole responses, compressed when they are sent.

Litestar's CompressionMiddleware opens a ``GzipFile`` (a zlib state of about 260 KiB) when a
request arrives and keeps it until the response is sent. A login waits for its argon2id turn, so
under load dozens of those states were alive at once: about 18 MiB of a worker's peak memory and
a compressor set up even for the bodiless 303 of every form step (docs/benchmarks.md). Every
guichet response is a whole body, so it is compressed in one call at the moment it is sent;
anything else (a streamed body, a cached response) goes to Litestar's own wrapper unchanged.
"""

from __future__ import annotations

import gzip
from typing import TYPE_CHECKING, Any, Literal

from litestar.datastructures import MutableScopeHeaders
from litestar.enums import CompressionEncoding
from litestar.middleware.compression import CompressionMiddleware
from litestar.utils.empty import value_or_default
from litestar.utils.scope.state import ScopeState

if TYPE_CHECKING:
    from litestar.types import Message, Scope, Send


def accepts_gzip(accept_encoding: str) -> bool:
    """True if the Accept-Encoding header allows gzip: a ``q=0`` refuses it (RFC 9110 12.5.3),
    which Litestar's own check, a substring test, does not see."""
    for item in accept_encoding.lower().split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip() in ("gzip", "*"):
            quality = params.strip().removeprefix("q=")
            try:
                return not params.strip() or float(quality) > 0
            except ValueError:
                return False
    return False


class WholeBodyCompression(CompressionMiddleware):
    """Compression that holds no compressor while a request is being handled."""

    def create_compression_send_wrapper(
        self,
        send: "Send",
        compression_encoding: Literal[CompressionEncoding.BROTLI, CompressionEncoding.GZIP] | str,
        scope: "Scope",
    ) -> "Send":
        if compression_encoding != CompressionEncoding.GZIP:
            return super().create_compression_send_wrapper(send, compression_encoding, scope)
        requested = next((value for name, value in scope["headers"] if name == b"accept-encoding"), b"").decode(
            "latin-1"
        )
        if not accepts_gzip(requested):
            return send
        state = ScopeState.from_scope(scope)
        start: Any = None
        fallback: "Send | None" = None

        async def send_wrapper(message: "Message") -> None:
            nonlocal start, fallback
            if fallback is not None:
                await fallback(message)
                return
            if message["type"] == "http.response.start":
                start = message
                return
            whole = (
                start is not None
                and message["type"] == "http.response.body"
                and not message.get("more_body")
                and not value_or_default(state.is_cached, False)
            )
            if not whole:  # streamed, cached or cut short: Litestar's wrapper, shown what it would have seen
                fallback = super(WholeBodyCompression, self).create_compression_send_wrapper(
                    send, compression_encoding, scope
                )
                if start is not None:
                    await fallback(start)
                await fallback(message)
                return
            body: bytes = message["body"]  # type: ignore[typeddict-item]
            already = "content-encoding" in MutableScopeHeaders(start)  # static files come compressed
            if len(body) >= self.config.minimum_size and not already:
                compressed = gzip.compress(body, compresslevel=self.config.gzip_compress_level, mtime=0)
                headers = MutableScopeHeaders(start)
                headers["Content-Encoding"] = compression_encoding
                headers["Content-Length"] = str(len(compressed))
                if "accept-encoding" not in headers.get("vary", "").lower():
                    headers.extend_header_value("vary", "Accept-Encoding")
                message["body"] = compressed  # type: ignore[typeddict-unknown-key]
                state.response_compressed = True
            await send(start)
            await send(message)

        return send_wrapper

"""The one exception root of streamrec.

Exception tree::

    StreamrecError              root; ``retriable`` says whether a retry may succeed
    ├── ConfigError             bad settings; never retriable
    ├── StoreError              the vector store (Milvus) failed
    │   └── StoreUnavailable    it could not be reached or timed out; retriable
    ├── EncoderError            the encoder failed (bad texts, a failed forward pass, another model)
    │   └── EncoderUnavailable  the encoder service could not be reached, timed out or was full; retriable
    ├── DeadLetterUnavailable   (streams.dlq) the dead-letter topic could not be read or written; retriable
    └── InjectedFault           (streamrec.failpoints) a failpoint fired; never retriable

Bad *input* is not an exception: decoding returns a rejection value
(see ``streams.events``). Exceptions are for bugs and infrastructure.
"""

from __future__ import annotations


class StreamrecError(Exception):
    """Root of every error streamrec raises on purpose."""

    retriable: bool = False

    def __init__(self, message: str, **context: object) -> None:
        detail = ", ".join(f"{key}={value!r}" for key, value in sorted(context.items()))
        super().__init__(f"{message} ({detail})" if detail else message)
        self.context = context


class ConfigError(StreamrecError):
    """A setting is missing or invalid."""


class StoreError(StreamrecError):
    """The vector store rejected or failed a call."""


class StoreUnavailable(StoreError):
    """The vector store could not be reached in time; the call may succeed later."""

    retriable = True


class EncoderError(StreamrecError):
    """The encoder could not embed the given texts."""


class EncoderUnavailable(EncoderError):
    """The encoder service could not answer in time; the call may succeed later."""

    retriable = True


class InjectedFault(StreamrecError):
    """A failpoint named in ``STREAMREC_FAILPOINTS`` fired (fault tests only)."""

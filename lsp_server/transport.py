"""JSON-RPC plumbing on top of pygls: every request gets exactly one response.

pygls 2 drops a request whose params fail to deserialize (it logs and answers nothing) and
answers nothing to a body that is not JSON. This protocol subclass answers the first with
`InvalidParams` for that request id and the second with a `ParseError` whose id is null, as
JSON-RPC 2.0 specifies. Requests in the `quill/` namespace keep their params as plain JSON, so
`protocol.from_wire` can type-check them and name the bad field (pygls would otherwise turn them
into namedtuples).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import attrs
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.protocol import LanguageServerProtocol

log = logging.getLogger(__name__)

_ANSWERED = object()  # a message already answered while being read


@attrs.define
class QuillRequestMessage:
    """A `quill/` request: params stay the JSON the client sent."""

    id: Any
    method: str
    jsonrpc: str
    params: Any = None


class QuillProtocol(LanguageServerProtocol):
    """LanguageServerProtocol that never leaves a request unanswered."""

    def get_message_type(self, method: str):
        if method.startswith("quill/"):
            return QuillRequestMessage
        return super().get_message_type(method)

    def structure_message(self, data: dict[str, Any]):
        try:
            return super().structure_message(data)
        except JsonRpcException as exc:
            if isinstance(data, dict) and "method" in data and isinstance(data.get("id"), (int, str)):
                method = data["method"]
                log.warning("bad params for %s (id %s): %s", method, data["id"], exc.__cause__)
                error = JsonRpcInvalidParams(f"Invalid params for {method}: {_short(exc.__cause__)}")
                self._send_response(data["id"], error=error.to_response_error())
                return _ANSWERED
            raise

    def handle_message(self, message):
        if message is _ANSWERED:
            return
        if not hasattr(message, "jsonrpc"):
            log.warning("ignoring a message that is not a JSON-RPC object: %.200r", message)
            return
        super().handle_message(message)

    def send_parse_error(self, error: Exception) -> None:
        """Answer a body that is not JSON (JSON-RPC: ParseError with a null id)."""
        self._send_data(
            {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": f"Parse error: {error}"}}
        )


def is_parse_error(error: Exception) -> bool:
    return isinstance(error, (json.JSONDecodeError, UnicodeDecodeError))


def _short(exc: Any) -> str:
    text = str(exc) if exc is not None else "wrong types"
    return text.splitlines()[0][:300]

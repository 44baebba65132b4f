"""A channel that only records: for the demo and dry runs. Every message is "sent"."""

from __future__ import annotations

import logging
import threading
from collections import deque

from siyu.channels.base import Capabilities, Message, Outcome

log = logging.getLogger("siyu.channels.console")


class ConsoleChannel:
    name = "console"
    capabilities = Capabilities(rich_media=True, delivery_receipts=False)

    def __init__(self, keep: int = 1000) -> None:
        self.sent: deque[Message] = deque(maxlen=keep)  # the latest, for the demo and tests
        self._lock = threading.Lock()

    def send(self, message: Message) -> Outcome:
        with self._lock:
            self.sent.append(message)
        log.info(
            "console send brand=%s channel=%s key=%s customer=%s",
            message.brand_id,
            message.channel,
            message.idem_key,
            message.customer_id,
        )
        return Outcome.ok(provider_id=f"console:{message.idem_key}")

"""Where the loop's events go out (``services/events``): a Pub/Sub topic, an HTTP webhook.

Each ``send`` returns once the receiver took the event and raises otherwise (a missing topic, an HTTP
status other than 2xx, a timeout), so the delivery can retry it.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from ..domain.events import Event

PUBLISH_TIMEOUT_S = 30.0


class PubSubSink:
    """Publishes to ``projects/<project>/topics/<topic>`` (the Pub/Sub emulator when PUBSUB_EMULATOR_HOST is set)."""

    name = "pubsub"

    def __init__(self, project: str, topic: str, timeout_s: float = PUBLISH_TIMEOUT_S) -> None:
        self.project, self.topic, self.timeout_s = project, topic, timeout_s
        self._client: Any = None

    def send(self, event: Event) -> None:
        if self._client is None:
            from google.cloud.pubsub_v1 import PublisherClient

            self._client = PublisherClient()
        data, attributes = event.pubsub()
        future = self._client.publish(self._client.topic_path(self.project, self.topic), data, **attributes)
        future.result(timeout=self.timeout_s)


class WebhookError(RuntimeError):
    pass


class WebhookSink:
    """POSTs the event's Slack-compatible payload as JSON; any 2xx is taken."""

    name = "webhook"

    def __init__(self, url: str, timeout_s: float) -> None:
        self.url, self.timeout_s = url, timeout_s

    def send(self, event: Event) -> None:
        body = json.dumps(event.webhook(), default=str).encode()
        req = urllib.request.Request(self.url, data=body, method="POST", headers={
            "Content-Type": "application/json", "User-Agent": "opsloop-events", "Ce-Id": event.id})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                status = resp.status
        except urllib.error.HTTPError as exc:
            raise WebhookError(f"the webhook answered HTTP {exc.code}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise WebhookError(f"the webhook did not answer: {getattr(exc, 'reason', exc)}") from None
        if not 200 <= status < 300:
            raise WebhookError(f"the webhook answered HTTP {status}")

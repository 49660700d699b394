"""SmsChannel: one GSM-7 SMS per message, posted to the caisse's HTTP gateway."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from urllib.parse import quote_plus, urlsplit

from guichet.core import (
    CODE,
    MOBILE,
    NOTICE,
    PASSWORD,
    ConfigError,
    DeliveryError,
    Message,
    PluginContext,
    Recipient,
    StepError,
    delivery_key,
    retry_after_seconds,
)
from guichet.core.delivery_templates import SAMPLE_PAYLOAD, TEMPLATES, render, template_context, template_environment
from guichet.core.identifiers import FRENCH_REGIONS, parse_mobile
from guichet.plugins.delivery_sms.gsm import ONE_SMS, septets, to_gsm7
from guichet.plugins.delivery_sms.settings import SmsSettings

log = logging.getLogger("guichet.delivery_sms")

BUILTIN_TEMPLATES = Path(__file__).parent / "templates"
SETTINGS_KEY = "$.plugins.settings.delivery_sms"


def build_body(settings: SmsSettings, to: str, text: str) -> str:
    """The request body: each placeholder replaced by its value, escaped for the body's format."""
    values = {"to": to, "text": text, "sender": settings.sender}
    body = settings.body_template
    for key, value in values.items():
        if settings.body_format == "json":
            # a placeholder written inside quotes gets the escaped content, a bare one the whole JSON string
            literal = json.dumps(value, ensure_ascii=False)
            body = body.replace(f'"{{{key}}}"', literal).replace(f"{{{key}}}", literal)
        else:
            body = body.replace(f"{{{key}}}", quote_plus(value))
    return body


class SmsChannel:
    """The ``sms`` channel."""

    name = "sms"
    label_fr = "par SMS"
    reaches = MOBILE
    carries = frozenset({CODE, PASSWORD, NOTICE})

    def __init__(self, settings: SmsSettings, context: PluginContext) -> None:
        self.settings = settings
        self.context = context
        if settings.url == "demo":
            if context.demo is None:
                raise ConfigError('url = "demo" needs demo mode with the demo mailbox on', key=f"{SETTINGS_KEY}.url")
            self.url = context.demo.sms_url
        else:
            self.url = settings.url
        secret = settings.auth.resolve() if settings.auth else None  # at start-up; only ever sent, never logged
        self.headers = {
            "Content-Type": "application/json; charset=utf-8"
            if settings.body_format == "json"
            else "application/x-www-form-urlencoded"
        }
        uses_secret = False
        for header, value in settings.headers.items():
            if "{auth}" in value:
                if secret is None:
                    raise ConfigError(
                        f"the header {header} uses {{auth}} but no auth secret is set", key=f"{SETTINGS_KEY}.headers"
                    )
                value, uses_secret = value.replace("{auth}", secret), True
            self.headers[header] = value
        has_authorization = any(h.lower() == "authorization" for h in settings.headers)
        if secret is not None and not uses_secret and not has_authorization:
            self.headers["Authorization"] = f"Bearer {secret}"
        if settings.body_format == "json":
            try:
                json.loads(build_body(settings, "+33600000000", "texte"))
            except ValueError:
                raise ConfigError(
                    "body_template does not give valid JSON", key=f"{SETTINGS_KEY}.body_template"
                ) from None
        self.env = template_environment(
            context, settings.templates_dir, BUILTIN_TEMPLATES, setting=f"{SETTINGS_KEY}.templates_dir"
        )
        self._check_templates()

    def __repr__(self) -> str:
        return f"SmsChannel(url={self.url!r})"  # headers hold the secret: never shown

    def _check_templates(self) -> None:
        """Every template, with the longest values, must fit one SMS: a caisse override that does not is refused."""
        for template in TEMPLATES:
            probe = Message(
                id=0,
                channel=self.name,
                template=template,
                recipient=Recipient(name="Marie-Hélène"),
                payload=SAMPLE_PAYLOAD,
                caisse_name=self.context.config.caisse.name,
                created_at=self.context.clock.now(),
            )
            length = septets(self.text(probe))
            if length > ONE_SMS:
                raise ConfigError(
                    f"the SMS template {template!r} gives {length} characters, more than one SMS "
                    f"({ONE_SMS}): shorten it (templates_dir) or the caisse name",
                    key=f"{SETTINGS_KEY}.templates_dir",
                )

    def text(self, message: Message) -> str:
        """The SMS text, in GSM-7, on one line per template line, trimmed."""
        raw = render(self.env, f"{message.template}.txt", template_context(self.context, message), channel="sms")
        return to_gsm7(" ".join(raw.split()))

    async def probe(self) -> str:
        """Reach the gateway (connection, TLS, any HTTP answer to an OPTIONS request), send nothing;
        raise DeliveryError when it cannot be reached. ``guichet config check --connect`` calls it."""
        import httpx

        try:
            async with httpx.AsyncClient(timeout=self.settings.timeout_seconds, follow_redirects=False) as client:
                response = await client.request("OPTIONS", self.url)
        except httpx.TimeoutException:
            raise DeliveryError(f"the SMS gateway {self._where()} timed out", permanent=False) from None
        except httpx.HTTPError as exc:
            raise DeliveryError(
                f"cannot reach the SMS gateway {self._where()} ({type(exc).__name__})", permanent=False
            ) from None
        return f"SMS gateway {self._where()} answered (HTTP {response.status_code} to OPTIONS)"

    def _where(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")  # no path, no query

    async def send(self, message: Message) -> None:
        try:
            to = parse_mobile(
                message.recipient.mobile or "",
                required=True,
                regions=FRENCH_REGIONS + self.context.config.security.foreign_mobile_regions,
            )
        except StepError:
            raise DeliveryError("the recipient has no valid mobile number", permanent=True) from None
        assert to is not None
        text = self.text(message)
        if septets(text) > ONE_SMS:  # only with values longer than the start-up check's: the gateway splits it
            log.warning("outbox message %s: SMS text longer than one SMS (%s)", message.id, message.template)
        body = build_body(self.settings, to, text)
        headers = self.headers
        if self.settings.idempotency_header:
            # the same key on every attempt at this message: a gateway that honours it sends one SMS
            headers = {
                **headers,
                self.settings.idempotency_header: delivery_key(self.context.config.caisse.id, message),
            }
        # imported at the first SMS, not at start-up: with its command-line extras (click, rich,
        # pygments) when those are installed, httpx is ~10 MiB that a web process never uses
        import httpx

        try:
            async with httpx.AsyncClient(timeout=self.settings.timeout_seconds, follow_redirects=False) as client:
                response = await client.request(
                    self.settings.method, self.url, content=body.encode("utf-8"), headers=headers
                )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # no connection, so no request: nothing can have been sent
            raise DeliveryError(f"cannot reach the SMS gateway ({type(exc).__name__})", permanent=False) from None
        except httpx.TimeoutException:
            # the request went out (or part of it): the gateway may have sent the SMS
            raise DeliveryError(
                "the SMS gateway did not answer in time (outcome unknown)", permanent=False, outcome_unknown=True
            ) from None
        except httpx.HTTPError as exc:
            raise DeliveryError(
                f"the SMS gateway dropped the request ({type(exc).__name__}; outcome unknown)",
                permanent=False,
                outcome_unknown=True,
            ) from None
        status = response.status_code
        if 200 <= status < 300:
            return
        if status in (408, 425, 429) or status >= 500:
            raise DeliveryError(
                f"the SMS gateway answered {status}",
                permanent=False,
                retry_after=retry_after_seconds(response.headers.get("Retry-After"), self.context.clock.now()),
            )
        raise DeliveryError(f"the SMS gateway refused the message: {status}", permanent=True)

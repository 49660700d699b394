"""SmsChannel: one GSM-7 SMS per message, posted to the caisse's HTTP gateway."""
from __future__ import annotations

import datetime as dt
import email.utils
import json
import logging
from pathlib import Path
from urllib.parse import quote_plus


from guichet.core import ConfigError, DeliveryError, Message, PluginContext, Recipient, StepError
from guichet.core.delivery_templates import TEMPLATES, render, template_context, template_environment
from guichet.core.identifiers import parse_mobile
from guichet.plugins.delivery_sms.gsm import ONE_SMS, septets, to_gsm7
from guichet.plugins.delivery_sms.settings import SmsSettings

log = logging.getLogger("guichet.delivery_sms")

BUILTIN_TEMPLATES = Path(__file__).parent / "templates"
SETTINGS_KEY = "$.plugins.settings.delivery_sms"

# the longest values the core puts in each payload key, to prove at start-up that every text fits
SAMPLE_PAYLOAD = {
    "code": "123456789012", "lifetime_minutes": 60, "password": "Ab3#kP9mQw2xZr",
    "expires_on": "31/12/2026", "masked_identifier": "185*******123", "new_email_masked": "j***n@exemple.fr",
    "registered_on": "31/12/2026",
}


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


def retry_after_seconds(value: str | None, now: dt.datetime) -> float | None:
    """Retry-After as seconds: either a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return max((when - now).total_seconds(), 0.0)


class SmsChannel:
    """The ``sms`` channel."""

    name = "sms"
    label_fr = "SMS"

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
        self.headers = {"Content-Type": "application/json; charset=utf-8" if settings.body_format == "json"
                        else "application/x-www-form-urlencoded"}
        uses_secret = False
        for header, value in settings.headers.items():
            if "{auth}" in value:
                if secret is None:
                    raise ConfigError(f"the header {header} uses {{auth}} but no auth secret is set",
                                      key=f"{SETTINGS_KEY}.headers")
                value, uses_secret = value.replace("{auth}", secret), True
            self.headers[header] = value
        has_authorization = any(h.lower() == "authorization" for h in settings.headers)
        if secret is not None and not uses_secret and not has_authorization:
            self.headers["Authorization"] = f"Bearer {secret}"
        if settings.body_format == "json":
            try:
                json.loads(build_body(settings, "+33600000000", "texte"))
            except ValueError:
                raise ConfigError("body_template does not give valid JSON", key=f"{SETTINGS_KEY}.body_template") from None
        self.env = template_environment(context, settings.templates_dir, BUILTIN_TEMPLATES,
                                        setting=f"{SETTINGS_KEY}.templates_dir")
        self._check_templates()

    def __repr__(self) -> str:
        return f"SmsChannel(url={self.url!r})"  # headers hold the secret: never shown

    def _check_templates(self) -> None:
        """Every template, with the longest values, must fit one SMS: a caisse override that does not is refused."""
        for template in TEMPLATES:
            probe = Message(id=0, channel=self.name, template=template, recipient=Recipient(name="Marie-Hélène"),
                            payload=SAMPLE_PAYLOAD, caisse_name=self.context.config.caisse.name,
                            created_at=self.context.clock.now())
            length = septets(self.text(probe))
            if length > ONE_SMS:
                raise ConfigError(f"the SMS template {template!r} gives {length} characters, more than one SMS "
                                  f"({ONE_SMS}): shorten it (templates_dir) or the caisse name",
                                  key=f"{SETTINGS_KEY}.templates_dir")

    def text(self, message: Message) -> str:
        """The SMS text, in GSM-7, on one line per template line, trimmed."""
        raw = render(self.env, f"{message.template}.txt", template_context(self.context, message), channel="sms")
        return to_gsm7(" ".join(raw.split()))

    async def send(self, message: Message) -> None:
        try:
            to = parse_mobile(message.recipient.mobile or "", required=True)
        except StepError:
            raise DeliveryError("the recipient has no valid mobile number", permanent=True) from None
        assert to is not None
        text = self.text(message)
        if septets(text) > ONE_SMS:  # only with values longer than the start-up check's: the gateway splits it
            log.warning("outbox message %s: SMS text longer than one SMS (%s)", message.id, message.template)
        body = build_body(self.settings, to, text)
        # imported at the first SMS, not at start-up: with its command-line extras (click, rich,
        # pygments) when those are installed, httpx is ~10 MiB that a web process never uses
        import httpx

        try:
            async with httpx.AsyncClient(timeout=self.settings.timeout_seconds, follow_redirects=False) as client:
                response = await client.request(self.settings.method, self.url, content=body.encode("utf-8"),
                                                headers=self.headers)
        except httpx.TimeoutException:
            raise DeliveryError("the SMS gateway timed out", permanent=False) from None
        except httpx.HTTPError as exc:
            raise DeliveryError(f"cannot reach the SMS gateway ({type(exc).__name__})", permanent=False) from None
        status = response.status_code
        if 200 <= status < 300:
            return
        if status in (408, 425, 429) or status >= 500:
            raise DeliveryError(f"the SMS gateway answered {status}", permanent=False,
                                retry_after=retry_after_seconds(response.headers.get("Retry-After"),
                                                                self.context.clock.now()))
        raise DeliveryError(f"the SMS gateway refused the message: {status}", permanent=True)

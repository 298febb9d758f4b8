"""The invite email: rendered from Jinja2 templates (HTML autoescaped), sent as MIME through SES v2.

The agent's name and the tenant's name are untrusted: the HTML part escapes them, the text part is
plain text, and the subject goes through `email`'s header encoding (names never hold line breaks).

Sending is one raw SES v2 `SendEmail` with the configuration set (so bounces and complaints are
published) and message tags naming the agent and invite version (so those events find the agent).
SES throttling is retried here with exponential backoff and jitter, on top of botocore's own quick
retries; a refusal for good is `EmailRejectedError`, anything else that failed is `EmailNotSentError`.
"""

from __future__ import annotations

import base64
import functools
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import formataddr, parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from onboarding.agents.problems import Problem, ProblemKind
from onboarding.core.errors import EmailNotSentError, EmailRejectedError, error_code
from onboarding.core.observability import logger

if TYPE_CHECKING:
    from jinja2 import Environment

TEMPLATES = Path(__file__).parents[1] / "templates"  # onboarding/templates, shared with the pages

# SES v2 answers TooManyRequestsException; SES v1 answers Throttling ("Maximum sending rate exceeded").
THROTTLING_CODES = frozenset({"TooManyRequestsException", "Throttling", "ThrottlingException"})
# Refusals that a retry cannot fix.
REJECTION_CODES = frozenset(
    {
        "MessageRejected",
        "MailFromDomainNotVerifiedException",
        "MailFromDomainNotVerified",
        "BadRequestException",
        "InvalidParameterValue",
    }
)


@dataclass(frozen=True)
class InviteEmailContent:
    to: str
    agent_name: str
    tenant_name: str | None  # who invites; None: the email says "the team that sent this invite"
    link: str
    expires_at: datetime
    valid_days: int


@dataclass(frozen=True)
class RenderedEmail:
    to: str
    subject: str
    text: str
    html: str


@functools.cache
def _environment() -> Environment:
    # Imported here: only sending an invite renders one (jinja2 is ~0.1x of a bare boto3 import at cold start).
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=True, default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _text_environment() -> Environment:
    return _environment().overlay(autoescape=False)


def render_invite(content: InviteEmailContent) -> RenderedEmail:
    context = {
        "agent_name": content.agent_name,
        "tenant_name": content.tenant_name,
        "email": content.to,
        "link": content.link,
        "expires_at": content.expires_at.strftime("%d %B %Y, %H:%M UTC"),
        "valid_days": content.valid_days,
    }
    text_env = _text_environment()
    subject = text_env.get_template("invite_subject.txt.j2").render(context).strip()
    return RenderedEmail(
        to=content.to,
        subject=" ".join(subject.split()),
        text=text_env.get_template("invite.txt.j2").render(context),
        html=_environment().get_template("invite.html.j2").render(context),
    )


@dataclass(frozen=True)
class ReconnectEmailContent:
    """A reconnect email (the mailbox stopped connecting) or a password-expiry warning."""

    to: str
    agent_name: str
    tenant_name: str | None
    link: str
    expires_at: datetime
    purpose: str  # reconnect | password_expiry
    problem: Problem
    since: datetime | None = None  # when the mailbox stopped connecting
    password_expires_at: datetime | None = None
    microsoft: bool = False  # connected with Sign in with Microsoft: no password to re-enter
    reminder: bool = False  # not the first email for this problem


def _day(value: datetime) -> str:
    return f"{value.day} {value:%B %Y}"


def reconnect_words(content: ReconnectEmailContent) -> dict[str, str]:
    """The email's subject and paragraphs, in words the owner can act on."""
    monitor = content.tenant_name or "the team that monitors it"
    who = monitor[:1].upper() + monitor[1:]
    email, what = content.to, content.problem.what
    since = _day(content.since) if content.since else "recently"
    if content.purpose == "password_expiry":
        expires = _day(content.password_expires_at) if content.password_expires_at else "soon"
        return {
            "subject": f"Your password expires on {expires}: keep your mailbox {email} connected",
            "opening": f"The password of your mailbox {email} expires on {expires}. After that, {monitor} can "
            "no longer read it until the new password is entered with the link below.",
            "action": "After you change your password, use this link to keep your mailbox connected: enter the "
            "new password there. The server and the other settings that work now are kept.",
            "button": "Keep your mailbox connected",
        }
    if content.problem.kind is ProblemKind.UNREACHABLE:
        return {
            "subject": f"Your mailbox {email} cannot be reached",
            "opening": f"Your mailbox {email} could not be reached since {since}: {what}. {who} cannot read "
            "it meanwhile.",
            "action": "If your email works for you, the server may no longer be reachable from the internet: "
            "forward the note below to the person who runs your company's email. Once it is fixed, the mailbox "
            "connects again by itself. If your password changed meanwhile, enter the new one with this link.",
            "button": "Check your mailbox's connection",
        }
    if content.microsoft:
        action = 'To reconnect it, open this link and press "Sign in with Microsoft" again.'
    elif content.problem.kind is ProblemKind.LOCKED:
        action = (
            "Sign in to your email once (in Outlook or in your browser) to unlock your account or change the "
            "expired password, or ask the person who runs your company's email for help. Then open this link "
            "and enter your password. We will not try the old password again."
        )
    else:
        action = (
            "If you changed your password, open this link and enter the new one: the server and the other "
            "settings that worked are kept. We will not try the old password again."
        )
    return {
        "subject": f"Your mailbox {email} stopped connecting: please reconnect it",
        "opening": f"Your mailbox {email} stopped connecting on {since}: {what}. {who} cannot read it until "
        "you reconnect it.",
        "action": action,
        "button": "Reconnect your mailbox",
    }


def render_reconnect(content: ReconnectEmailContent) -> RenderedEmail:
    words = reconnect_words(content)
    context = {
        **words,
        "agent_name": content.agent_name,
        "email": content.to,
        "link": content.link,
        "expires_at": content.expires_at.strftime("%d %B %Y, %H:%M UTC"),
        "for_it": content.problem.for_it if content.purpose == "reconnect" else None,
        "reminder": content.reminder,
    }
    text_env = _text_environment()
    return RenderedEmail(
        to=content.to,
        subject=" ".join(words["subject"].split()),
        text=text_env.get_template("reconnect.txt.j2").render(context),
        html=_environment().get_template("reconnect.html.j2").render(context),
    )


def build_mime(email: RenderedEmail, sender: str) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = formataddr(("", email.to))
    message["Subject"] = email.subject
    message.set_content(email.text, subtype="plain", charset="utf-8")
    message.add_alternative(email.html, subtype="html", charset="utf-8")
    return message.as_bytes()


class Mailer:
    """Sends rendered emails through SES v2 (`ses`: the SES v2 client). `sleep` is injectable for tests."""

    def __init__(
        self,
        sender: str,
        ses: Any,
        *,
        configuration_set: str | None = None,
        max_throttle_retries: int = 5,
        base_delay: float = 0.2,
        max_delay: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.sender = sender
        self.configuration_set = configuration_set
        self.ses = ses
        self.max_throttle_retries = max_throttle_retries
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.sleep = sleep

    def send(self, email: RenderedEmail, *, tags: Mapping[str, str]) -> str:
        """Send; returns the SES message id. Raises EmailRejectedError or EmailNotSentError."""
        request: dict[str, Any] = {
            "FromEmailAddress": parseaddr(self.sender)[1],
            "Destination": {"ToAddresses": [email.to]},
            "Content": {"Raw": {"Data": build_mime(email, self.sender)}},
            "EmailTags": [{"Name": name, "Value": value} for name, value in tags.items()],
        }
        if self.configuration_set:
            request["ConfigurationSetName"] = self.configuration_set
        attempt = 0
        while True:
            try:
                response = self.ses.send_email(**request)
                return str(response["MessageId"])
            except ClientError as error:
                code = error_code(error)
                if code in REJECTION_CODES:
                    raise EmailRejectedError(
                        f"SES refused the email ({code})", details=[{"code": code}]
                    ) from error
                if code not in THROTTLING_CODES or attempt >= self.max_throttle_retries:
                    raise EmailNotSentError(
                        f"SES did not send the email ({code})", details=[{"code": code}]
                    ) from error
                attempt += 1
                delay = min(self.max_delay, self.base_delay * 2**attempt) * random.uniform(0.5, 1.0)  # noqa: S311
                logger.warning(
                    "SES throttled; backing off", extra={"attempt": attempt, "delay_s": round(delay, 3)}
                )
                self.sleep(delay)
            except BotoCoreError as error:
                raise EmailNotSentError(f"SES could not be reached ({type(error).__name__})") from error


def tag_value(value: str) -> str:
    """SES tag values allow only letters, digits, `_`, `-` and `.`: tenant ids may hold `:`."""
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def untag_value(value: str) -> str:
    return base64.urlsafe_b64decode((value + "=" * (-len(value) % 4)).encode()).decode()

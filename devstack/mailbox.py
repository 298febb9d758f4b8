"""Emails the handlers sent through moto's SES, read from moto's backend in this process.

moto keeps sent mail in memory only (no public endpoint), so the local stack, whose moto server runs in
its own process, reads `ses_backends[account][region].sent_messages` (SES v2 sends land there too).
"""

from __future__ import annotations

import email
import email.policy
import re
from typing import Any

ACCOUNT = "123456789012"
_LINK = re.compile(r"https?://[^\s\"'<>]+/connect/[A-Za-z0-9_-]+")


def _parts(raw: str) -> tuple[str, str, str, str]:
    message = email.message_from_string(raw, policy=email.policy.default)
    text = html = ""
    for part in message.walk():
        if part.get_content_maintype() == "multipart":
            continue
        if part.get_content_type() == "text/plain" and not text:
            text = str(part.get_content())
        elif part.get_content_type() == "text/html" and not html:
            html = str(part.get_content())
    return str(message.get("To", "")), str(message.get("Subject", "")), text, html


def sent_emails(region: str = "us-east-1", account: str = ACCOUNT) -> list[dict[str, Any]]:
    """Every email sent so far, oldest first: `to`, `subject`, `text`, `html`, `link`."""
    from moto.ses.models import ses_backends

    emails = []
    for message in list(ses_backends[account][region].sent_messages):
        raw = getattr(message, "raw_data", None)
        if raw is not None:
            to, subject, text, html = _parts(raw)
        else:  # a simple (non-raw) message: moto keeps one body only
            to = ", ".join(message.destinations.get("ToAddresses", []))
            subject, text, html = message.subject, message.body, message.body
        found = _LINK.search(text) or _LINK.search(html)
        emails.append(
            {
                "to": to,
                "subject": subject,
                "text": text,
                "html": html,
                "link": found.group(0) if found else None,
            }
        )
    return emails


def summary(sent: dict[str, Any]) -> str:
    """What the console shows of an email: who, what, and the link (what a local user needs)."""
    return f"[email] to {sent['to']}: {sent['subject']}\n        {sent['link'] or '(no link)'}"

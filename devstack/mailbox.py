"""Emails the handlers sent through moto's SES, read from moto's backend in this process, and the
sent-mail page that shows them.

moto keeps sent mail in memory only (no public endpoint), so the local stack, whose moto server runs in
this process, reads `ses_backends[account][region].sent_messages` (SES v2 sends land there too).
"""

from __future__ import annotations

import email
import email.policy
import html
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
    # A subject folded right after "Subject:" (a long one) keeps the fold's space when read back: not ours.
    return str(message.get("To", "")), str(message.get("Subject", "")).strip(), text, html


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


_URL = re.compile(r"https?://[^\s\"'<>]+")

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sent emails · local stack</title>
<link rel="stylesheet" href="/_local/dashboard.css">
</head>
<body>
<header><h1>Sent emails</h1>
<p>Every email the local stack sent, newest first (nothing leaves this machine). Reload the page to
see new ones. <a href="/">Back to the dashboard</a> · <a href="/_local/emails.json">JSON</a></p></header>
{body}
</body>
</html>
"""


def _linked(text: str) -> str:
    """Plain text as HTML with its web addresses clickable."""
    out, last = [], 0
    for found in _URL.finditer(text):
        out.append(html.escape(text[last : found.start()]))
        url = html.escape(found.group(0))
        out.append(f'<a href="{url}">{url}</a>')
        last = found.end()
    out.append(html.escape(text[last:]))
    return "".join(out)


def sent_mail_page(emails: list[dict[str, Any]], *, current_run: int) -> str:
    """The sent-mail page (`emails` newest first): each email with its connect link as a button and its
    text, links clickable."""
    if not emails:
        body = (
            '<p class="empty">No email sent yet. Add an agent on the dashboard: its invite shows up here.</p>'
        )
        return _PAGE.format(body=body)
    cards = []
    for sent in emails:
        run = sent.get("run")
        when = html.escape(str(sent.get("sentAt") or ""))
        if run == current_run:
            origin = f"this run, {when}" if when else "this run"
        else:
            origin = f"run {run} (before a restart), {when}" if when else "an earlier run"
        link = sent.get("link")
        button = (
            f'<p><a class="button" href="{html.escape(link)}">Open the connect link</a></p>' if link else ""
        )
        cards.append(
            f"""<article class="mail" data-to="{html.escape(str(sent.get("to", "")))}">
<h2>{html.escape(str(sent.get("subject", "")))}</h2>
<p class="meta">To <strong>{html.escape(str(sent.get("to", "")))}</strong> · {origin}</p>
{button}
<details><summary>The email</summary><pre>{_linked(str(sent.get("text") or ""))}</pre></details>
</article>"""
        )
    return _PAGE.format(body="\n".join(cards))

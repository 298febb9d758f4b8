"""The forms of an HTML page as a browser would submit them (action, id, input values, named buttons): how
the tests and the Microsoft 365 bench fill in the simulator's sign-in and consent pages without a browser."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(
                {"action": a.get("action", ""), "id": a.get("id", ""), "fields": {}, "buttons": []}
            )
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1]["fields"][a["name"]] = a.get("value", "")
        elif tag == "button" and self.forms and a.get("name"):
            self.forms[-1]["buttons"].append((a["name"], a.get("value", "")))


def forms(html: str) -> list[dict[str, Any]]:
    """Each form of `html`, in order: {"action", "id", "fields": {name: value}, "buttons": [(name, value)]}."""
    parser = _Forms()
    parser.feed(html)
    return parser.forms

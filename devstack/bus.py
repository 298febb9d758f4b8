"""The stack's EventBridge bus, locally: created in moto from template.yaml, with a local rule that copies what
is published on it to a CloudWatch Logs group (as one watches a bus on AWS), and the `/_local/events` page
that shows those events, newest first.

The functions' `PutEvents` calls go to moto's EventBridge like any other AWS call (under the publisher's
IAM policy); moto delivers each event to the rules of its bus. The tap rule and its log group are the local
stack's own (not in the template): on AWS, a dashboard's rule with an API destination listens in its place
(README "Status events").
"""

from __future__ import annotations

import html
import json
from typing import Any

from devstack import template as tpl

TAP_RULE = "local-tap"


def tap_log_group(stage: str, bus_name: str) -> str:
    return f"/aws/events/{stage}/{bus_name}"


def create_buses(events: Any, logs: Any, refs: dict[str, str], stage: str) -> dict[str, str]:
    """Every AWS::Events::EventBus of the template, under its name, each with its tap rule and log group;
    the log group of each bus by its logical id."""
    groups = {}
    region, account = refs["AWS::Region"], refs["AWS::AccountId"]
    for logical_id in tpl.resources(tpl.load_template(), "AWS::Events::EventBus"):
        name = refs[logical_id]
        events.create_event_bus(Name=name)
        group = tap_log_group(stage, name)
        logs.create_log_group(logGroupName=group)
        events.put_rule(
            Name=TAP_RULE,
            EventBusName=name,
            EventPattern=json.dumps({"account": [account]}),  # everything published on it
            State="ENABLED",
        )
        events.put_targets(
            Rule=TAP_RULE,
            EventBusName=name,
            Targets=[{"Id": "log", "Arn": f"arn:aws:logs:{region}:{account}:log-group:{group}"}],
        )
        groups[logical_id] = group
    return groups


def published(logs: Any, group: str) -> list[dict[str, Any]]:
    """The events published on the bus so far, as EventBridge delivers them (envelope and detail), oldest
    first."""
    found: list[tuple[int, int, dict[str, Any]]] = []
    kwargs: dict[str, Any] = {"logGroupName": group}
    while True:
        page = logs.filter_log_events(**kwargs)
        for entry in page.get("events", []):
            found.append((entry["timestamp"], len(found), json.loads(entry["message"])))
        if not page.get("nextToken"):
            break
        kwargs["nextToken"] = page["nextToken"]
    found.sort(key=lambda item: (item[0], item[1]))
    return [event for _, _, event in found]


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Status events · local stack</title>
<link rel="stylesheet" href="/_local/dashboard.css">
</head>
<body>
<header><h1>Status events</h1>
<p>Every event published on the bus <code>{bus}</code> this run, newest first: what a dashboard's webhook
would receive (README "Status events"). Reload the page to see new ones. <a href="/">Back to the
dashboard</a> · <a href="/_local/events?format=json">JSON</a> · <a href="/_local/emails">Sent emails</a></p>
</header>
{body}
</body>
</html>
"""


def _cell(value: Any) -> str:
    return "<em>none</em>" if value is None else html.escape(str(value))


def events_page(events: list[dict[str, Any]], *, bus: str) -> str:
    """The page (`events` newest first): one row per event, its detail in full below."""
    if not events:
        body = '<p class="empty">No event yet. Add an agent on the dashboard: its status changes show up here.</p>'
        return _PAGE.format(bus=html.escape(bus), body=body)
    rows = []
    for event in events:
        detail = event.get("detail") or {}
        rows.append(
            f"""<tr class="event" data-agent="{html.escape(str(detail.get("agentId", "")))}">
<td>{_cell(event.get("time"))}</td><td>{_cell(event.get("detail-type"))}</td>
<td>{_cell(detail.get("tenantId"))}</td><td><code>{_cell(detail.get("agentId"))}</code></td>
<td>{_cell(detail.get("from"))}</td><td><strong>{_cell(detail.get("to"))}</strong></td>
<td>{_cell(detail.get("reason"))}</td><td>{_cell(detail.get("version"))}</td>
<td><details><summary>event</summary><pre>{html.escape(json.dumps(event, indent=2))}</pre></details></td>
</tr>"""
        )
    table = (
        '<table class="events"><thead><tr><th>time</th><th>detail-type</th><th>tenant</th><th>agent</th>'
        "<th>from</th><th>to</th><th>reason</th><th>version</th><th></th></tr></thead><tbody>\n"
        + "\n".join(rows)
        + "\n</tbody></table>"
    )
    return _PAGE.format(bus=html.escape(bus), body=table)

"""Break a mailbox on purpose: the simulators' controls for people, on the local stack's gateway.

* ``GET /_local/simulators``: a page listing the simulated Exchange mailboxes and Microsoft 365 users with
  their state, and buttons (plain HTML forms) for each control.
* ``GET /_local/simulators/state.json``: the same state as JSON.
* ``POST /_local/simulators/<action>`` (form or JSON body ``{"target": ..., ...}``): one control. A form post
  comes back to the page (303); a JSON post gets ``{"ok": true, "message": ...}`` or ``{"error": ...}``.
* ``python -m devstack control <action> <target> [...]`` (``devstack/__main__.py``) posts here over HTTP.

Actions (the target is a mailbox or user address; Microsoft 365 addresses go to the identity simulator):

| action | Exchange mailbox | Microsoft 365 user |
|---|---|---|
| ``password`` (``value``) | the password changes | -- |
| ``lock`` (``minutes``, optional) / ``unlock`` | AD locks the account (456) | Smart Lockout (AADSTS50053) |
| ``expire`` (``days``: a number, may be 0 or negative, or ``never``) | the password expires then | -- |
| ``offline`` (``how``: ``refuse`` or ``503``) / ``online`` | its EWS server (or a host name) goes down | token endpoint outage (target ``microsoft``: everyone) |
| ``revoke`` | -- | refresh tokens revoked (AADSTS50173) |
| ``disable`` / ``enable`` | -- | account disabled (AADSTS50057) |
| ``withdraw-consent`` | -- | the app's permission removed (AADSTS65001) |
| ``lockout`` (``threshold``, ``window``, ``duration`` minutes; target ``domain``) | the domain's lockout policy | -- |
| ``reset`` (target ``all``) | everything back as the scenarios say | no user disabled, locked or out |

Safety: the gateway listens on 127.0.0.1 only. These pages have no CSRF token, which is acceptable only
because of that: every request must name a loopback ``Host``, a POST's ``Origin`` (when sent) must be this
loopback origin, and a browser's ``Sec-Fetch-Site: cross-site`` is refused -- so no other web site a person
visits can post here. Actions are POST only. No password is ever shown.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from html import escape
from typing import Any
from urllib.parse import urlencode, urlsplit

from werkzeug.wrappers import Request, Response

from devstack.exchange_sim.simulator import ExchangeSimulator
from devstack.identity_sim import IdentitySimulator

PATH = "/_local/simulators"
ACTIONS = (
    "password", "lock", "unlock", "expire", "offline", "online", "revoke", "disable", "enable",
    "withdraw-consent", "lockout", "reset",
)  # fmt: skip
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


class ControlError(Exception):
    """A request the controls cannot carry out (unknown target, bad value): 400 with this message."""


@dataclass
class SimulatorControls:
    exchange: ExchangeSimulator | None
    identity: IdentitySimulator | None

    # ------------------------------------------------------------------ actions

    def act(self, action: str, target: str, params: dict[str, str]) -> str:
        """Carry out one control; the sentence saying what changed."""
        if action not in ACTIONS:
            raise ControlError(f"unknown action {action!r}: one of {', '.join(ACTIONS)}")
        handler: Callable[[str, dict[str, str]], str] = getattr(self, "_" + action.replace("-", "_"))
        target = target.strip()
        if not target:
            raise ControlError("name a mailbox, a user or a host")
        try:
            return handler(target, params)
        except KeyError as missing:
            raise ControlError(str(missing.args[0] if missing.args else missing)) from None
        except ValueError as bad:
            raise ControlError(str(bad)) from None

    def _is_microsoft(self, target: str) -> bool:
        return self.identity is not None and self.identity.state.world.user(target) is not None

    def _ex(self) -> ExchangeSimulator:
        if self.exchange is None:
            raise ControlError("the Exchange simulator is not running")
        return self.exchange

    def _ms(self) -> IdentitySimulator:
        if self.identity is None:
            raise ControlError("the Microsoft 365 simulator is not running")
        return self.identity

    def _password(self, target: str, params: dict[str, str]) -> str:
        self._ex().set_password(target, params.get("value", ""))
        return f"{target}: the password was changed; the old one is refused from now on"

    def _lock(self, target: str, params: dict[str, str]) -> str:
        if self._is_microsoft(target):
            self._ms().lock_user(target)
            return f"{target}: locked by Smart Lockout (AADSTS50053)"
        minutes = params.get("minutes", "").strip()
        until = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=float(minutes)) if minutes else None
        self._ex().lock_account(target, until)
        return f"{target}: account locked " + (f"for {minutes} minutes" if until else "until unlocked")

    def _unlock(self, target: str, params: dict[str, str]) -> str:
        if self._is_microsoft(target):
            self._ms().lock_user(target, locked=False)
        else:
            self._ex().unlock_account(target)
        return f"{target}: unlocked"

    def _expire(self, target: str, params: dict[str, str]) -> str:
        days = params.get("days", "").strip().lower()
        if days == "never":
            self._ex().expire_password(target, None)
            return f"{target}: the password never expires"
        at = dt.datetime.now(dt.UTC) + dt.timedelta(days=float(days))
        self._ex().expire_password(target, at)
        return f"{target}: the password expires on {at:%Y-%m-%d %H:%M} UTC"

    def _offline(self, target: str, params: dict[str, str]) -> str:
        if target.lower() == "microsoft":
            self._ms().set_outage()
            return "Microsoft's token endpoint is down for everyone (503 temporarily_unavailable)"
        if self._is_microsoft(target):
            self._ms().set_outage(address=target)
            return f"{target}: Microsoft's token endpoint is down for this user (503)"
        how = params.get("how", "refuse") or "refuse"
        hosts = self._ex().take_offline(target, how=how)
        return f"{', '.join(hosts)}: offline ({'connections refused' if how == 'refuse' else '503'})"

    def _online(self, target: str, params: dict[str, str]) -> str:
        if target.lower() == "microsoft":
            self._ms().set_outage(False)
            return "Microsoft's token endpoint is back"
        if self._is_microsoft(target):
            self._ms().set_outage(False, address=target)
            return f"{target}: Microsoft's token endpoint is back for this user"
        return f"{', '.join(self._ex().bring_online(target))}: online"

    def _revoke(self, target: str, params: dict[str, str]) -> str:
        self._ms().revoke_refresh_tokens(target)
        return f"{target}: refresh tokens revoked (AADSTS50173 at the next refresh)"

    def _disable(self, target: str, params: dict[str, str]) -> str:
        self._ms().disable_user(target)
        return f"{target}: account disabled (AADSTS50057)"

    def _enable(self, target: str, params: dict[str, str]) -> str:
        self._ms().disable_user(target, disabled=False)
        return f"{target}: account enabled"

    def _withdraw_consent(self, target: str, params: dict[str, str]) -> str:
        self._ms().withdraw_consent(target)
        return f"{target}: consent withdrawn (AADSTS65001 at the next refresh)"

    def _lockout(self, target: str, params: dict[str, str]) -> str:
        raw = params.get("threshold", "").strip()
        threshold = int(raw) if raw and raw != "0" else None
        window = dt.timedelta(minutes=float(params.get("window") or 30))
        duration = dt.timedelta(minutes=float(params.get("duration") or 30))
        self._ex().set_lockout_policy(threshold, window=window, duration=duration)
        if threshold is None:
            return "lockout policy: accounts are never locked"
        return f"lockout policy: {threshold} wrong passwords within {window} lock an account for {duration}"

    def _reset(self, target: str, params: dict[str, str]) -> str:
        if self.exchange is not None:
            self.exchange.reset_controls()
        if self.identity is not None:
            self.identity.reset_controls()
        return "everything is back as the scenarios say"

    # ------------------------------------------------------------------ state

    def state(self) -> dict[str, Any]:
        out: dict[str, Any] = {"exchange": [], "microsoft": [], "offline": {}, "lockout": None}
        if self.exchange is not None:
            out["exchange"] = [_jsonable(asdict(view)) for view in self.exchange.accounts()]
            out["offline"] = self.exchange.offline_hosts()
            out["lockout"] = asdict(self.exchange.world.lockout)
        if self.identity is not None:
            out["microsoft"] = [asdict(view) for view in self.identity.user_states()]
        return out

    # ------------------------------------------------------------------ HTTP

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        return self.dispatch(request)(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        refusal = _refuse_foreign(request)
        if refusal is not None:
            return refusal
        path = request.path.rstrip("/")
        if request.method == "GET" and path == "":
            message = request.args.get("message", "")
            return Response(self.page(message, request.args.get("error") == "1"), content_type="text/html")
        if request.method == "GET" and path == "/state.json":
            return _json(self.state())
        action = path.lstrip("/")
        if request.method != "POST" or not action or "/" in action:
            return _json({"error": "not found"}, 404)
        wants_json = request.is_json
        params: dict[str, str] = (
            {k: str(v) for k, v in (request.get_json(silent=True) or {}).items()}
            if wants_json
            else dict(request.form.items())
        )
        try:
            message, failed = self.act(action, params.pop("target", ""), params), False
        except ControlError as error:
            message, failed = str(error), True
        if wants_json:
            return _json(
                {"error": message} if failed else {"ok": True, "message": message}, 400 if failed else 200
            )
        query = urlencode({"message": message, **({"error": "1"} if failed else {})})
        return Response(status=303, headers={"Location": f"{request.script_root}?{query}"})

    def page(self, message: str = "", failed: bool = False) -> str:
        state = self.state()
        rows = "".join(_exchange_row(view) for view in state["exchange"])
        users = "".join(_microsoft_row(view) for view in state["microsoft"])
        policy = state["lockout"] or {}
        threshold = policy.get("threshold") or 0
        notice = (
            f'<p class="{"error" if failed else "done"}" role="status">{escape(message)}</p>'
            if message
            else ""
        )
        return PAGE.format(
            notice=notice,
            rows=rows or '<tr><td colspan="6">The Exchange simulator is not running.</td></tr>',
            users=users or '<tr><td colspan="4">The Microsoft 365 simulator is not running.</td></tr>',
            threshold=threshold,
            window=int((policy.get("window") or 1800) / 60),
            duration=int((policy.get("duration") or 1800) / 60),
        )


def mount(gateway: Any, exchange: ExchangeSimulator | None, identity: IdentitySimulator | None) -> None:
    """Serve the controls on the local stack's gateway at ``/_local/simulators``."""
    gateway.mount(PATH, SimulatorControls(exchange, identity))


def _refuse_foreign(request: Request) -> Response | None:
    """Loopback only: a loopback Host; a POST's Origin, when sent, this very loopback origin; no cross-site."""
    host = (request.host or "").rsplit(":", 1)[0] if not (request.host or "").startswith("[") else "[::1]"
    if host not in LOOPBACK_HOSTS:
        return _json({"error": "the simulator controls answer on 127.0.0.1 only"}, 403)
    if request.headers.get("Sec-Fetch-Site", "") == "cross-site":
        return _json({"error": "cross-site requests are refused"}, 403)
    origin = request.headers.get("Origin")
    if request.method == "POST" and origin is not None:
        parts = urlsplit(origin)
        if parts.hostname not in ("127.0.0.1", "localhost", "::1") or parts.netloc != request.host:
            return _json({"error": "requests from another origin are refused"}, 403)
    return None


def _json(body: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(body, default=str), status=status, content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )  # fmt: skip


def _jsonable(view: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in view.items()}


def _form(action: str, target: str, label: str, fields: str = "") -> str:
    return (
        f'<form method="post" action="{PATH}/{action}"><input type="hidden" name="target" '
        f'value="{escape(target)}">{fields}<button type="submit">{escape(label)}</button></form>'
    )


def _exchange_row(view: dict[str, Any]) -> str:
    email = view["email"]
    expires = view["password_expires"]
    state = []
    if view["locked"]:
        state.append("locked" + (f" until {view['locked_until'][:16]} UTC" if view["locked_until"] else ""))
    if view["password_expired"]:
        state.append("password expired")
    if view["password_changed"]:
        state.append("password changed")
    if view["offline_hosts"]:
        state.append("server offline")
    if view["bad_password_count"]:
        state.append(f"{view['bad_password_count']} wrong passwords")
    server = view["ews_host"] or "-"
    controls = "".join(
        [
            _form(
                "password",
                email,
                "Change password",
                '<input name="value" placeholder="new password" required>',
            ),
            _form("unlock", email, "Unlock") if view["locked"] else _form("lock", email, "Lock"),
            _form("expire", email, "Expire in", '<input name="days" value="3" size="3"> days '),
            _form("online", email, "Bring server online")
            if view["offline_hosts"]
            else (_form("offline", email, "Take server offline") if view["ews_host"] else ""),
        ]
    )
    return (
        f"<tr><td>{escape(email)}</td><td>{escape(server)}</td>"
        f"<td>{escape(expires[:10]) if expires else 'never'}</td>"
        f'<td>{escape(", ".join(state) or "ok")}</td><td class="controls">{controls}</td></tr>'
    )


def _microsoft_row(view: dict[str, Any]) -> str:
    address = view["address"]
    state = [
        name
        for name, on in (
            ("disabled", view["disabled"]),
            ("locked", view["locked"]),
            ("token endpoint down", view["outage"]),
        )
        if on
    ]
    controls = "".join(
        [
            _form("revoke", address, "Revoke refresh tokens"),
            _form("enable", address, "Enable") if view["disabled"] else _form("disable", address, "Disable"),
            _form("unlock", address, "Unlock") if view["locked"] else _form("lock", address, "Lock"),
            _form("withdraw-consent", address, "Withdraw consent"),
            _form(
                "online" if view["outage"] else "offline",
                address,
                "End outage" if view["outage"] else "Outage",
            ),
        ]
    )
    return (
        f"<tr><td>{escape(address)}</td><td>{view['refresh_tokens']} working, "
        f"{view['revoked_refresh_tokens']} revoked</td><td>{escape(', '.join(state) or 'ok')}</td>"
        f'<td class="controls">{controls}</td></tr>'
    )


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Simulators: break a mailbox on purpose</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; }}
table {{ border-collapse: collapse; margin-bottom: 2rem; }}
td, th {{ border-bottom: 1px solid #ddd; padding: .3rem .6rem; text-align: left; vertical-align: top; }}
td.controls form {{ display: inline-block; margin: 0 .3rem .2rem 0; }}
p.done {{ color: #105f10; }} p.error {{ color: #a00000; }}
</style></head><body>
<h1>Simulators: break a mailbox on purpose</h1>
<p>Local only. Change a password, lock an account, expire a password, take a server offline, revoke Microsoft
sign-ins; then watch the dashboard (<a href="/">/</a>) and the sent mail (<a href="/_local/emails">/_local/emails</a>).
The same from a shell: <code>python -m devstack control --help</code>.</p>
{notice}
<h2>Exchange mailboxes</h2>
<table><thead><tr><th>mailbox</th><th>EWS server</th><th>password expires</th><th>state</th><th>controls</th>
</tr></thead><tbody>{rows}</tbody></table>
<h2>Domain lockout policy</h2>
<form method="post" action="/_local/simulators/lockout"><input type="hidden" name="target" value="domain">
lock after <input name="threshold" value="{threshold}" size="3"> wrong passwords (0: never) within
<input name="window" value="{window}" size="3"> minutes, for <input name="duration" value="{duration}" size="3">
minutes <button type="submit">Set policy</button></form>
<h2>Microsoft 365 users</h2>
<table><thead><tr><th>user</th><th>refresh tokens</th><th>state</th><th>controls</th></tr></thead>
<tbody>{users}</tbody></table>
<form method="post" action="/_local/simulators/offline"><input type="hidden" name="target" value="microsoft">
<button type="submit">Microsoft outage for everyone</button></form>
<form method="post" action="/_local/simulators/online"><input type="hidden" name="target" value="microsoft">
<button type="submit">End it</button></form>
<h2>Start again</h2>
<form method="post" action="/_local/simulators/reset"><input type="hidden" name="target" value="all">
<button type="submit">Reset every simulator control</button></form>
</body></html>
"""

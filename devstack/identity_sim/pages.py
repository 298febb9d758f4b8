"""The HTML pages a person sees at the simulated sign-in: plain forms, so a test can post them like a browser."""

from __future__ import annotations

from html import escape

from .scenarios import User

# What the consent page says for each permission (Microsoft's user-facing descriptions).
SCOPE_DESCRIPTIONS = {
    "openid": "Sign you in",
    "profile": "View your basic profile",
    "email": "View your email address",
    "offline_access": "Maintain access to data you have given it access to",
    "User.Read": "Sign you in and read your profile",
    "Mail.ReadBasic": "Read user basic mail",
    "Mail.Read": "Read your mail",
}

_STYLE = (
    "body{font-family:Segoe UI,Helvetica,Arial,sans-serif;background:#f2f2f2;margin:0}"
    "main{background:#fff;max-width:440px;margin:60px auto;padding:44px;box-shadow:0 2px 6px rgba(0,0,0,.2)}"
    "h1{font-size:24px;font-weight:600}label{display:block;margin-top:12px}"
    "input[type=email],input[type=password],input[type=text]{width:100%;padding:6px 0;border:0;"
    "border-bottom:1px solid #666;font-size:15px}"
    "button{margin-top:20px;padding:6px 20px;font-size:15px}.primary{background:#0067b8;color:#fff;border:0}"
    ".error{color:#e81123}.details{font-size:12px;color:#666;margin-top:24px}"
)


def _page(title: str, body: str, *, status_note: str = "") -> str:
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main><div>Microsoft (simulated)</div>{body}{status_note}</main></body></html>"
    )


def _details(code: int | None, trace: str) -> str:
    if code is None:
        return ""
    return f"<div class='details' id='error-details'>Error code: AADSTS{code}<br>Request Id: {escape(trace)}</div>"


def sign_in(
    *,
    action: str,
    ctx: str,
    login: str = "",
    error: str | None = None,
    code: int | None = None,
    trace: str = "",
) -> str:
    err = f"<p class='error' id='usernameError' role='alert'>{escape(error)}</p>" if error else ""
    body = (
        "<h1>Sign in</h1>"
        f"<form method='post' action='{escape(action)}' id='signin'>{err}"
        f"<input type='hidden' name='ctx' value='{escape(ctx)}'>"
        "<label for='login'>Email, phone, or Skype</label>"
        f"<input type='email' id='login' name='login' value='{escape(login)}' autocomplete='username' required>"
        "<label for='passwd'>Password</label>"
        "<input type='password' id='passwd' name='passwd' autocomplete='current-password' required>"
        "<button type='submit' class='primary' id='idSIButton9'>Sign in</button></form>"
    )
    return _page("Sign in to your account", body + _details(code, trace))


def consent(*, action: str, ctx: str, app_name: str, user: User, scopes: tuple[str, ...], admin: bool) -> str:
    items = "".join(
        f"<li data-scope='{escape(s)}'>{escape(SCOPE_DESCRIPTIONS.get(s, s))} <small>({escape(s)})</small></li>"
        for s in scopes
    )
    on_behalf = (
        "<p>If you accept, this app will get access to the specified resources for all users in your "
        "organization. No one else will be prompted to review these permissions.</p>"
        if admin
        else "<p>Accepting these permissions means that you allow this app to use your data as specified in "
        "their terms of service and privacy statement.</p>"
    )
    body = (
        f"<div id='account'>{escape(user.address)}</div><h1>Permissions requested</h1>"
        f"<p><strong id='appName'>{escape(app_name)}</strong> (unverified)</p>"
        f"<p>This app would like to:</p><ul id='scopes'>{items}</ul>{on_behalf}"
        f"<form method='post' action='{escape(action)}' id='consent'>"
        f"<input type='hidden' name='ctx' value='{escape(ctx)}'>"
        "<button type='submit' name='decision' value='cancel' id='idBtn_Back'>Cancel</button> "
        "<button type='submit' name='decision' value='accept' class='primary' id='idSIButton9'>Accept</button>"
        "</form>"
    )
    return _page("Permissions requested", body)


def admin_approval(*, action: str, ctx: str, app_name: str, user: User, trace: str) -> str:
    body = (
        f"<div id='account'>{escape(user.address)}</div><h1>Need admin approval</h1>"
        f"<p><strong id='appName'>{escape(app_name)}</strong> needs permission to access resources in your "
        "organization that only an admin can grant. Please ask an admin to grant permission to this app before "
        "you can use it.</p>"
        f"<form method='post' action='{escape(action)}' id='approval'>"
        f"<input type='hidden' name='ctx' value='{escape(ctx)}'>"
        "<button type='submit' name='decision' value='return' id='idBtn_Back'>"
        "Return to the application without granting consent</button></form>"
    )
    return _page("Need admin approval", body + _details(90094, trace))


def error(*, title: str, message: str, code: int, trace: str) -> str:
    body = f"<h1>{escape(title)}</h1><p id='errorMessage'>AADSTS{code}: {escape(message)}</p>"
    return _page(title, body + _details(code, trace))


def signed_out() -> str:
    body = "<h1>You signed out of your account</h1><p>It's a good idea to close all browser windows.</p>"
    return _page("Sign out", body)


def form_post(redirect_uri: str, params: dict[str, str]) -> str:
    """``response_mode=form_post``: the browser posts the response to the app."""
    fields = "".join(
        f"<input type='hidden' name='{escape(k)}' value='{escape(v)}'>" for k, v in params.items()
    )
    return (
        "<!DOCTYPE html><html><head><title>Working...</title></head><body onload='document.forms[0].submit()'>"
        f"<form method='POST' name='hiddenform' action='{escape(redirect_uri)}'>{fields}"
        "<noscript><p>Script is disabled. Click Submit to continue.</p><input type='submit' value='Submit'>"
        "</noscript></form></body></html>"
    )

"""The Active Directory side of the simulated mailboxes: each mailbox's account, its password, its expiry, its
lockout -- the mutable state the simulator's controls change while the servers run.

What it plays, and from where:

* **Account lockout** (Microsoft Learn, "Account lockout threshold", "Account lockout duration", "Reset
  account lockout counter after"): every wrong password raises the account's ``badPwdCount``; once it reaches
  the threshold the account is locked for the lockout duration (or until an administrator unlocks it, when
  the duration is 0); the count goes back to 0 when the observation window has passed since the last wrong
  password, and after a successful sign-in. A locked account is refused whatever password is given, and
  those refusals do not count. Windows' default threshold is 0, "never locked": so is the simulator's until a
  test or a person sets a policy (``LockoutPolicy``).
* **Password expiry** (``msDS-UserPasswordExpiryTimeComputed`` = ``pwdLastSet`` + the domain's maximum
  password age; "password never expires" accounts have none): a sign-in with the right, expired password is
  refused (``STATUS_PASSWORD_EXPIRED``) and does not count as a wrong password. Changing the password moves
  the expiry a whole maximum age ahead.

Not played: the "n-2" password history rule (a DC does not count a wrong password equal to one of the last two
passwords, for NTLM and Kerberos): every wrong password counts here, the worst case the lockout hazard is about.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

MAX_PASSWORD_AGE_DAYS = 60  # the simulated domain's "Maximum password age" (Windows' default is 42)

SignIn = Literal["ok", "bad_password", "locked", "expired"]


@dataclass(frozen=True)
class LockoutPolicy:
    """The domain's account lockout policy. ``threshold`` None: accounts are never locked (Windows' default)."""

    threshold: int | None = None
    window: float = 30 * 60.0  # seconds: "Reset account lockout counter after"
    duration: float | None = 30 * 60.0  # seconds: "Account lockout duration"; None: until an admin unlocks


@dataclass
class Account:
    """One mailbox's AD account (mutable; guarded by ``World.lock``)."""

    password: str = field(repr=False)
    password_expires: float | None  # epoch seconds; None: the password never expires
    locked_forever: bool = False  # locked until an administrator unlocks it
    locked_until: float | None = None  # locked until this time (epoch seconds)
    bad_password_count: int = 0
    last_bad_password: float | None = None
    password_version: int = 0  # raised by every change: connections signed in before it sign in again

    def is_locked(self, now: float) -> bool:
        return self.locked_forever or (self.locked_until is not None and now < self.locked_until)

    def is_expired(self, now: float) -> bool:
        return self.password_expires is not None and now >= self.password_expires

    def sign_in(self, password_ok: bool, now: float, policy: LockoutPolicy) -> SignIn:
        """What the domain controller answers a sign-in, and what it remembers of it."""
        if self.is_locked(now):
            return "locked"
        if self.locked_until is not None:  # the lockout duration has passed: unlocked by itself
            self.locked_until = None
            self.bad_password_count = 0
        if not password_ok:
            if self.last_bad_password is not None and now - self.last_bad_password >= policy.window:
                self.bad_password_count = 0
            self.bad_password_count += 1
            self.last_bad_password = now
            if policy.threshold and self.bad_password_count >= policy.threshold:
                if policy.duration is None:
                    self.locked_forever = True
                else:
                    self.locked_until = now + policy.duration
            return "bad_password"
        self.bad_password_count = 0
        if self.is_expired(now):
            return "expired"
        return "ok"

    def change_password(self, new: str, now: float) -> None:
        self.password = new
        self.password_version += 1
        if self.password_expires is not None:  # pwdLastSet moves: a whole maximum age ahead
            self.password_expires = float(int(now + MAX_PASSWORD_AGE_DAYS * 86400))

    def unlock(self) -> None:
        self.locked_forever = False
        self.locked_until = None
        self.bad_password_count = 0
        self.last_bad_password = None


@dataclass(frozen=True)
class AccountView:
    """What the controls report about one mailbox (no password)."""

    email: str
    locked: bool
    locked_until: dt.datetime | None  # None while locked: until an administrator unlocks it
    bad_password_count: int
    password_expires: dt.datetime | None  # None: never expires
    password_expired: bool
    password_changed: bool  # the password is no longer the scenario's
    offline_hosts: tuple[str, ...]  # the hosts serving this mailbox that are offline now
    ews_host: str | None


def utc(ts: float | None) -> dt.datetime | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC)

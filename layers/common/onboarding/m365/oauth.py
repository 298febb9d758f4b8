"""The authorization code flow with PKCE, through MSAL, with its state kept server-side.

`initiate_auth_code_flow` makes the flow: the authorize URL, a random `state`, the PKCE `code_verifier`
and an OpenID `nonce`. The flow never goes to the browser: it is stored as a DynamoDB item keyed by
SHA-256(state), bound to the invite (its hash) and to this browser (the hash of a random cookie), with
a TTL of minutes. The callback takes the item exactly once, and only from the browser and for the invite it
was started for (a conditional delete), so a replayed state or code finds nothing and a foreign one
leaves the owner's sign-in alone; MSAL then checks the state and the ID token's nonce and redeems the code with the
verifier and our client secret.

msal is imported here only, and this module only on the routes that sign in (the page's other routes
and the other functions never pay for it).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msal
import requests
from botocore.exceptions import ClientError
from pydantic import SecretStr

from onboarding.core import aws
from onboarding.core.dynamo_types import from_item, to_item
from onboarding.core.observability import logger
from onboarding.m365.config import MSAL_SCOPES, M365Config
from onboarding.m365.outcomes import M365Reason, aadsts_codes, reason_for_identity_error

# MSAL logs request details at DEBUG; nothing of a sign-in belongs in our logs.
logging.getLogger("msal").setLevel(logging.WARNING)


class SignInError(Exception):
    """The sign-in cannot go on; `reason` says why in the terms of `outcomes`."""

    def __init__(self, reason: M365Reason, *, aadsts: int | None = None, oauth_error: str = "") -> None:
        super().__init__(reason.value)
        self.reason = reason
        self.aadsts = aadsts
        self.oauth_error = oauth_error  # the OAuth `error` Microsoft answered (invalid_grant, ...), if any


class ForeignSignInError(Exception):
    """A pending sign-in taken by a browser (or for an invite) other than the one that started it."""


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


# ---------------------------------------------------------------------------- the stored flow
@dataclass(frozen=True)
class PendingSignIn:
    tenant_id: str
    agent_id: str
    invite_hash: str
    browser_hash: str
    expires_at: int
    flow: dict[str, Any]


class FlowStore:
    """Pending sign-ins in the agents table: `pk=OAUTH#<sha256(state)>`, removed by TTL if never used."""

    def __init__(self, table_name: str, ddb: Any | None = None) -> None:
        self.table_name = table_name
        self._ddb = ddb

    @property
    def ddb(self) -> Any:
        return self._ddb or aws.client("dynamodb")

    @staticmethod
    def key(state: str) -> dict[str, Any]:
        return to_item({"pk": f"OAUTH#{digest(state)}", "sk": "FLOW"})

    def put(self, pending: PendingSignIn) -> None:
        item = {
            "entity": "oauth_flow",
            "tenantId": pending.tenant_id,
            "agentId": pending.agent_id,
            "inviteHash": pending.invite_hash,
            "browserHash": pending.browser_hash,
            "expiresAt": pending.expires_at,
            "ttl": pending.expires_at,
            "flow": json.dumps(pending.flow),
        }
        self.ddb.put_item(
            TableName=self.table_name,
            Item={**self.key(pending.flow["state"]), **to_item(item)},
            ConditionExpression="attribute_not_exists(pk)",
        )

    def take(self, state: str, *, browser_hash: str, invite_hash: str) -> PendingSignIn | None:
        """The pending sign-in of this state, removed in the same call: a second take finds nothing.

        Taken only by the browser and for the invite it was started for (a conditional delete): anyone else
        holding the state (and any cookie) finds nothing and leaves it for its owner's browser."""
        try:
            response = self.ddb.delete_item(
                TableName=self.table_name,
                Key=self.key(state),
                ConditionExpression="attribute_exists(pk) AND browserHash = :browser AND inviteHash = :invite",
                ExpressionAttributeValues=to_item({":browser": browser_hash, ":invite": invite_hash}),
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            if error.response.get("Item"):  # there, and left there: another browser's or invite's
                raise ForeignSignInError("This sign-in was started by another browser or invite") from None
            return None
        values = from_item(response.get("Attributes") or {})
        if not values:
            return None
        return PendingSignIn(
            tenant_id=str(values["tenantId"]),
            agent_id=str(values["agentId"]),
            invite_hash=str(values["inviteHash"]),
            browser_hash=str(values["browserHash"]),
            expires_at=int(values["expiresAt"]),
            flow=json.loads(str(values["flow"])),
        )


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


# ---------------------------------------------------------------------------- MSAL
@dataclass(frozen=True)
class TokenGrant:
    refresh_token: SecretStr
    access_token: SecretStr
    username: str | None  # the ID token's preferred_username (the account signed in with)
    home_tenant: str | None


@dataclass(frozen=True)
class RefreshedTokens:
    access_token: SecretStr
    refresh_token: SecretStr | None  # the rotated one, when Microsoft sent one
    tenant_id: str | None  # the ID token's `tid`: the tenant the account signed in to (its home tenant)
    username: str | None  # the ID token's preferred_username


class _Http:
    """What MSAL calls for HTTP: a requests session with our timeout and CA, and no proxies from env."""

    def __init__(self, verify: str | bool, timeout: float) -> None:
        self.session = requests.Session()
        self.session.verify = verify
        self.session.trust_env = False
        self.timeout = timeout

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        return self.session.get(url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        return self.session.post(url, **kwargs)

    def close(self) -> None:
        self.session.close()


class OAuthClient:
    """Our Entra app as a confidential client. One per process; holds no tokens between calls."""

    def __init__(self, config: M365Config, client_secret: Callable[[], str]) -> None:
        self.config = config
        self._client_secret = client_secret
        self._app: msal.ConfidentialClientApplication | None = None

    @property
    def app(self) -> msal.ConfidentialClientApplication:
        if self._app is None:
            try:
                # Reads {authority}/v2.0/.well-known/openid-configuration once per process.
                self._app = msal.ConfidentialClientApplication(
                    self.config.client_id,
                    client_credential=self._client_secret(),
                    authority=self.config.authority,
                    instance_discovery=False,
                    http_client=_Http(self.config.verify, self.config.token_timeout),
                )
            except requests.Timeout as error:
                raise SignInError(M365Reason.TIMEOUT) from error
            except (requests.RequestException, ValueError) as error:
                logger.warning(
                    "Microsoft's sign-in metadata unavailable", extra={"error": type(error).__name__}
                )
                raise SignInError(M365Reason.UNAVAILABLE) from error
        return self._app

    def start(self, *, login_hint: str, redirect_uri: str) -> dict[str, Any]:
        """A new flow: its `auth_uri` is where the browser goes; the rest stays with us.

        The answer comes back as a GET with the code in the query (MSAL warns that form_post would be
        safer): a cross-site POST would not carry our SameSite=Lax cookie that binds the answer to this
        browser, and the code alone is useless (single use, PKCE verifier and client secret on our side).
        """
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="response_mode='form_post' is recommended")
            flow = self.app.initiate_auth_code_flow(
                MSAL_SCOPES, redirect_uri=redirect_uri, login_hint=login_hint, prompt="select_account"
            )
        return dict(flow)

    def redeem(self, flow: dict[str, Any], auth_response: Mapping[str, str]) -> TokenGrant:
        """Exchange the code (PKCE verifier + client secret) for tokens, or raise SignInError."""
        if "error" in auth_response:
            raise _identity_error(dict(auth_response))
        result = self._call(
            lambda app: app.acquire_token_by_auth_code_flow(flow, dict(auth_response), scopes=MSAL_SCOPES)
        )
        if "refresh_token" not in result or "access_token" not in result:
            raise SignInError(M365Reason.SIGN_IN_FAILED)
        claims = result.get("id_token_claims") or {}
        return TokenGrant(
            refresh_token=SecretStr(result["refresh_token"]),
            access_token=SecretStr(result["access_token"]),
            username=claims.get("preferred_username") or claims.get("email"),
            home_tenant=claims.get("tid"),
        )

    def refresh(self, refresh_token: SecretStr) -> RefreshedTokens:
        """A fresh access token (and the rotated refresh token, when Microsoft sends one), with who signed in
        as the ID token Microsoft sends along says (its `tid` and `preferred_username`)."""
        try:
            result = self._call(
                lambda app: app.acquire_token_by_refresh_token(
                    refresh_token.get_secret_value(), scopes=MSAL_SCOPES
                )
            )
        except SignInError as error:
            # RFC 6749 section 5.2: `invalid_grant` is a refresh token that is invalid, expired or revoked,
            # whatever AADSTS code comes with it (Microsoft warns apps not to depend on the codes, which change):
            # a code we do not know must not make a dead token look like an outage, tried again for a day.
            if error.reason is M365Reason.SIGN_IN_FAILED and error.oauth_error == "invalid_grant":
                raise SignInError(M365Reason.TOKEN_REJECTED, aadsts=error.aadsts) from None
            raise
        if "access_token" not in result:
            raise SignInError(M365Reason.SIGN_IN_FAILED)
        rotated = result.get("refresh_token")
        claims = result.get("id_token_claims") or {}
        return RefreshedTokens(
            access_token=SecretStr(result["access_token"]),
            refresh_token=SecretStr(rotated) if rotated else None,
            tenant_id=str(claims["tid"]) if claims.get("tid") else None,
            username=claims.get("preferred_username"),
        )

    def _call(self, call: Callable[[msal.ConfidentialClientApplication], dict[str, Any]]) -> dict[str, Any]:
        app = self.app
        app.token_cache = msal.TokenCache()  # tokens live in our credential store, not in memory
        try:
            result = call(app)
        except requests.Timeout as error:
            raise SignInError(M365Reason.TIMEOUT) from error
        except requests.RequestException as error:
            logger.warning("Token endpoint unreachable", extra={"error": type(error).__name__})
            raise SignInError(M365Reason.UNAVAILABLE) from error
        except msal.exceptions.MsalServiceError as error:
            # A 5xx from the token endpoint (503 temporarily_unavailable, AADSTS90033): MSAL raises instead
            # of returning the error body. Transient: the sign-in (or the check) is tried again later.
            logger.warning("Token endpoint unavailable", extra={"error": type(error).__name__})
            raise SignInError(M365Reason.UNAVAILABLE) from None
        except (ValueError, RuntimeError) as error:
            # MSAL refuses a tampered or foreign answer: a state mismatch is a ValueError; an ID token with
            # another nonce, issuer or audience a RuntimeError (msal.oauth2cli.oidc: IdTokenError and the
            # nonce check of the auth code flow). Their messages quote the token's claims: never logged.
            logger.warning("MSAL refused the sign-in answer", extra={"error": type(error).__name__})
            raise SignInError(M365Reason.SIGN_IN_INVALID) from None
        finally:
            app.token_cache = msal.TokenCache()
        if "error" in result:
            raise _identity_error(result)
        return result


def _identity_error(result: dict[str, Any]) -> SignInError:
    codes = aadsts_codes(result.get("error_codes"), result.get("error_description"))
    reason = reason_for_identity_error(
        result.get("error"), result.get("error_codes"), result.get("error_description")
    )
    if (
        str(result.get("error", "")).startswith("server_error")
        or result.get("error") == "temporarily_unavailable"
    ):
        reason = M365Reason.UNAVAILABLE
    logger.info(
        "Microsoft refused the sign-in",
        extra={"error": str(result.get("error"))[:40], "aadsts": codes[:3], "reason": reason.value},
    )
    return SignInError(reason, aadsts=codes[0] if codes else None, oauth_error=str(result.get("error") or ""))


def client_secret_reader(secret_arn: str) -> Callable[[], str]:
    """Reads the Entra app's client secret from Secrets Manager (a plain string, or JSON with
    `client_secret`), once per process through Powertools' cache."""

    def read() -> str:
        from aws_lambda_powertools.utilities import parameters

        value = str(parameters.get_secret(secret_arn, max_age=3600))
        if value.lstrip().startswith("{"):
            return str(json.loads(value)["client_secret"])
        return value

    return read

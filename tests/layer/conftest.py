# -- the layer's use cases under moto: the real repositories, stores and clients, no handler between
from typing import Any

import pytest

from devstack import template as tpl
from onboarding import deps
from onboarding.agents.store import DynamoAgentRepository
from onboarding.connect.forms import ConnectService
from onboarding.core import aws
from onboarding.core.credentials import KmsCredentialStore
from onboarding.invites.mailer import Mailer
from onboarding.invites.store import DynamoInviteRepository
from tests import lifecycle
from tests.conftest import CREDENTIALS_TABLE, TABLE_NAME
from tests.exchange_fixtures import (  # noqa: F401 - pytest fixtures
    config_for,
    exchange_config,
    exchange_sim,
    exchange_sim_server,
    strict_config,
    timeout_config,
)
from tests.invite_helpers import SENDER, verify_sender


@pytest.fixture
def invite_repo(moto_aws: None) -> DynamoInviteRepository:
    return deps.invite_repository(TABLE_NAME)


@pytest.fixture
def credentials(key_arn: str) -> KmsCredentialStore:
    return deps.credential_store(CREDENTIALS_TABLE, key_arn)


@pytest.fixture
def sfn(moto_aws: None) -> Any:
    return aws.client("stepfunctions")


@pytest.fixture
def state_machine_arn(sfn: Any) -> str:
    """The verification workflow from template.yaml (moto records executions; it does not run them)."""
    refs = {"VerifyMailboxFunction.Arn": tpl.function_arn("test-VerifyMailboxFunction")}
    return tpl.create_state_machine(sfn, "VerifyMailboxStateMachine", refs, name="verify-mailbox")


@pytest.fixture
def mailer(moto_aws: None) -> Mailer:
    verify_sender()
    return Mailer(SENDER, aws.client("sesv2"), sleep=lambda _: None)


# -- the connect page's use cases (tests/layer/connect/test_connect.py, test_onboarding_faults.py) -----------
EMAIL = "ann@contoso.com"


@pytest.fixture
def service(
    repo: DynamoAgentRepository,
    invite_repo: DynamoInviteRepository,
    credentials: KmsCredentialStore,
    sfn: Any,
    state_machine_arn: str,
) -> ConnectService:
    """The connect page's use cases on the real repositories, store and (moto's) Step Functions."""
    return ConnectService(
        repo, invite_repo, credentials, sfn, state_machine_arn=state_machine_arn, settings_timeout_seconds=600
    )


@pytest.fixture
def token(repo: DynamoAgentRepository, invite_repo: DynamoInviteRepository, mailer: Mailer) -> str:
    """The link of an agent invited at EMAIL."""
    return lifecycle.send_invite(repo, invite_repo, mailer, lifecycle.add(repo, email=EMAIL))

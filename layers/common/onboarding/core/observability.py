"""One Logger and one Metrics for the whole service (names come from POWERTOOLS_* variables).

The Powertools Tracer is not here: creating it imports the X-Ray SDK, whose recorder builds a botocore
X-Ray client at import (bench/cold_start.py). Only verify_mailbox creates one (its app.py), and only its
artifact ships the SDK (functions/verify_mailbox/requirements.in). The other functions rely on
`Tracing: Active` (Lambda traces the invocation without the SDK).
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics

logger = Logger()
metrics = Metrics()

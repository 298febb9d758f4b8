"""One Logger and one Metrics for the whole service (names come from POWERTOOLS_* variables).

The Powertools Tracer lives in `onboarding.tracing`, imported only by functions that want subsegments:
creating it imports the X-Ray SDK, whose recorder builds a botocore X-Ray client at import (about 0.4 s
of cold start, measured by bench/cold_start.py). The API functions rely on `Tracing: Active` instead
(Lambda traces the invocation without the SDK), which keeps them within their cold-start budget.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics

logger = Logger()
metrics = Metrics()

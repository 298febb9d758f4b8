"""The Powertools Tracer (X-Ray subsegments), for functions where its cold-start cost is worth it."""

from __future__ import annotations

from aws_lambda_powertools import Tracer

tracer = Tracer()

"""Let moto's Lambda run our real Python handlers.

Without Docker, moto 5.2.5's Lambda ("simple" backend) only echoes the payload and has no hook to run a
handler (getmoto/moto#9916). Its `LambdaSimpleBackend.invoke` is the one seam every invocation passes
through, from boto3 calls and from Step Functions tasks alike; we replace it while installed. moto is
pinned exactly in requirements-dev.in because of this.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from moto.awslambda_simple.models import LambdaSimpleBackend

from devstack.runtime import FunctionRunner


class LambdaRouter:
    def __init__(self, runners: dict[str, FunctionRunner]) -> None:
        self.by_name = {runner.name: runner for runner in runners.values()}

    def invoke(self, function_name: str, body: Any, response_headers: dict[str, str]) -> bytes:
        name = function_name.split(":function:")[-1].split(":")[0]
        runner = self.by_name.get(name)
        if runner is None:
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps({"errorType": "ResourceNotFoundException", "errorMessage": name}).encode()
        event = json.loads(body) if body else {}
        try:
            result = runner.invoke(event)
        except Exception as error:  # a handler that raises: what Lambda reports as an unhandled error
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps(
                {
                    "errorType": type(error).__name__,
                    "errorMessage": str(error)[:200],
                    "stackTrace": traceback.format_exception_only(error)[-1:],
                }
            ).encode()
        return json.dumps(result).encode()


@contextmanager
def handlers_installed(runners: dict[str, FunctionRunner]) -> Iterator[LambdaRouter]:
    router = LambdaRouter(runners)
    original = LambdaSimpleBackend.invoke

    def invoke(
        self: LambdaSimpleBackend,
        function_name: str,
        qualifier: str | None,
        body: Any,
        headers: Any,
        response_headers: Any,
    ) -> bytes:
        return router.invoke(function_name, body, response_headers)

    LambdaSimpleBackend.invoke = invoke  # type: ignore[method-assign]
    try:
        yield router
    finally:
        LambdaSimpleBackend.invoke = original  # type: ignore[method-assign]

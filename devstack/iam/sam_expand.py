"""Run by the SAM CLI's own interpreter (.venv-sam, where aws-sam-translator lives: its pydantic pin
conflicts with ours): print template.yaml as CloudFormation, policy templates expanded, as JSON."""

import json
import os
import sys

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class _NoManagedPolicies:
    """Our functions name no managed policy by name; SAM adds the ARNs it needs by itself."""

    def load(self) -> dict[str, str]:
        return {}


def main(path: str) -> None:
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")  # no AWS call is made; SAM wants a region
    with open(path, encoding="utf-8") as stream:
        template = yaml_parse(stream.read())
    # As `sam package` does before a deployment: local code paths become S3 locations.
    for resource in template.get("Resources", {}).values():
        properties = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri", "DefinitionUri"):
            if isinstance(properties.get(key), str) and not properties[key].startswith("s3://"):
                properties[key] = f"s3://packaged/{properties[key].strip('/')}"
    print(json.dumps(transform(template, {"AWS::Region": "us-east-1"}, _NoManagedPolicies())))


if __name__ == "__main__":
    main(sys.argv[1])

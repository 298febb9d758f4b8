"""Agents: the aggregate (models), its DynamoDB repository, the dashboard API's use cases, and the
watch that settles starts that died."""

"""IAM for the local stack and the tests: template.yaml's policies, expanded by SAM and enforced on every
AWS call a function or state machine makes (see enforce.py). Development infrastructure: never shipped."""

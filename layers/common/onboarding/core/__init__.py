"""What every feature stands on: AWS clients, DynamoDB typing, ids, domain errors, logging and
metrics, the email-address normal form, Step Functions execution names, and the sealed-secret store."""

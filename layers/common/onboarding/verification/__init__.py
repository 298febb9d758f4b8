"""The verification workflow's steps (one Step Functions task each), for Exchange and for
Microsoft 365."""

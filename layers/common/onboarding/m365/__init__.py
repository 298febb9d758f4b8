"""Microsoft 365 mailboxes: "Sign in with Microsoft" (OAuth 2.0 authorization code + PKCE via MSAL),
verified over Microsoft Graph.

One module per concern: `routing` (is this mailbox Microsoft 365? decided before any password),
`oauth` (the MSAL flow and its server-side state), `graph` (the two Graph reads that verify a mailbox),
`outcomes` (stable reason codes and plain-words messages; imports nothing heavy), `config` (settings).
"""

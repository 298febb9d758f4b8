"""Health checks of connected mailboxes (issue #20): a schedule wakes the dispatcher, which leases the due
agents (a query of the sparse `ByCheckDue` index, never a scan) onto a queue; the checker signs in once with
what onboarding stored and records what it found.

* ``models`` -- the queue message, verdicts, the policy (intervals, windows, thresholds);
* ``probes`` -- one check of an Exchange mailbox (EWS) or a Microsoft 365 one (token + Graph), as a verdict;
* ``check`` -- the use case: a verdict's state change (conditional writes) and the emails it asks for;
* ``dispatch`` -- the due agents, leased and queued;
* ``manual`` -- `POST /agents/{agentId}/check`.
"""

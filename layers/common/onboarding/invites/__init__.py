"""Invites: the link's token, its state and store, the email (templates in ../templates), and the
use cases that request, deliver and resolve invites and hear about bounces."""

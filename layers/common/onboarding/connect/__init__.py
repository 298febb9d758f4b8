"""The hosted connect page: its forms and pages, and the Microsoft sign-in and admin-consent use
cases (the Microsoft adapters are in onboarding.m365)."""

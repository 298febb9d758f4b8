"""Turning `sam build`'s output into what Lambda should run (`make build`)."""

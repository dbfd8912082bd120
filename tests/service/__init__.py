"""Service tests: wire contract, server, clients, CLIs (one in-process server per session)."""

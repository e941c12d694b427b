"""Spectrum: the L4 proxy (TCP/UDP listeners keyed on edge IP and port, relays, PROXY/SPP,
IP access rules, handoff of http/https apps to the CDN)."""

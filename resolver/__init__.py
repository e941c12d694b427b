"""The authoritative resolver for the zones (public and internal views) and its stub client.

- `resolver.answers`: pure; compiles a snapshot into wire answers and answers a query's bytes.
- `resolver.wire`: pure; DNS names, record data and query parsing.
- `resolver.framing`: pure; DNS-over-TCP 2-byte length framing.
- `resolver.server`: `serve_resolver(ctx)`, the UDP and TCP listeners.
- `resolver.stub`: `StubResolver`, the client the CDN and Spectrum use.
"""

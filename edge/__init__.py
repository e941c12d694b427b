"""edge: a local emulator of Cloudflare's edge network."""

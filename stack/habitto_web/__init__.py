"""The browser chat client, served by the backend itself at `/` (no build step, no CDN)."""

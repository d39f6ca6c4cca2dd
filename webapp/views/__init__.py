"""Blueprints: thin views that ask the policy, call engine services and render."""

from urllib.parse import urlsplit


def safe_next(target: str | None, default: str) -> str:
    """A redirect target on this site only (a path), else `default`."""
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target
